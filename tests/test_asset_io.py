"""Built-in asset files: a damaged, incomplete or wrong-version file names the file and field."""
import numpy as np
import pytest

from model_runtime.models.body_model import BUILTIN_BODY_PATH, load_builtin_body
from model_runtime.core.errors import ModelFileError
from model_runtime.models.face_model import BUILTIN_FACE_PATH, load_builtin_face


@pytest.mark.parametrize("loader,src", [(load_builtin_body, BUILTIN_BODY_PATH), (load_builtin_face, BUILTIN_FACE_PATH)])
def test_damaged_assets_give_clear_errors(tmp_path, loader, src):
    data = dict(np.load(src))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    with pytest.raises(ModelFileError, match="truncated.npz.*cannot read"):
        loader(truncated)
    first_field = next(k for k in data if k != "asset_version" and not k.startswith("extra_"))
    incomplete = tmp_path / "incomplete.npz"
    np.savez(incomplete, **{k: v for k, v in data.items() if k != first_field})
    with pytest.raises(ModelFileError, match=f"incomplete.npz: field '{first_field}' is missing"):
        loader(incomplete)
    old = tmp_path / "old.npz"
    np.savez(old, **{**data, "asset_version": np.int32(0)})
    with pytest.raises(ModelFileError, match="old.npz: field 'asset_version' is 0"):
        loader(old)
    with pytest.raises(ModelFileError, match="nothere.npz.*missing"):
        loader(tmp_path / "nothere.npz")
    assert loader(src).source == str(src)

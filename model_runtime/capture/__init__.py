"""The capture pipeline: sources, per-frame fitting, filters, translation (Eq. 14), writer."""

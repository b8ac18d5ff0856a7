"""Engine-independent detection math for IFD v1 and v3; the strategies call these modules."""

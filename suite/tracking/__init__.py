"""What a run records and how it survives outages: the tracker, the offline journal and `accelbench sync`, run
pages, provenance records and locks."""

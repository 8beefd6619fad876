//! The history sink: every position from the location topic into `location_history` in the CQL store (built in the history issue).

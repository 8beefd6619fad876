//! Fan-out: a user's friends joined with every active user's latest position, filtered by distance and routed to gateway delivery topics (built in the live-pipeline issue).

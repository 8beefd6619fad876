//! The gateway: WebSocket and REST server, auth, connection registry, first page and paging (built in the live-pipeline issue).

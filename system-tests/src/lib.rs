//! Tests that span several stages live in `tests/` here, so that no stage's crate depends on
//! another stage through its tests. The library itself is empty.

//! The store contract (`tower_sse_hub::contract`) on the in-process store.

// In memory, a topic's history is never lost while it has subscribers.
tower_sse_hub::contract_tests!(memory, |config| Some(Hub::with_config(config)), None);

//! Gateway ids interned to small integers, so a user's connection costs 4 bytes in the table
//! rather than a string.
//!
//! Each id is counted by the users connected through it and forgotten when the last one goes,
//! so gateways that come and go (deploys, autoscaling) do not grow the table for ever.

use std::collections::HashMap;
use std::sync::Arc;

/// A gateway's interned number; [`NOT_CONNECTED`] means none.
pub(crate) type GatewayIdx = u32;

/// The gateway number of a user with no live connection.
pub(crate) const NOT_CONNECTED: GatewayIdx = 0;

/// The interned gateway ids and how many users each one holds.
#[derive(Debug, Default)]
pub(crate) struct Gateways {
    by_name: HashMap<Arc<str>, GatewayIdx>,
    /// Index `i` holds gateway number `i + 1`; `None` is a free number.
    slots: Vec<Option<Interned>>,
    free: Vec<GatewayIdx>,
}

#[derive(Debug)]
struct Interned {
    name: Arc<str>,
    users: u32,
}

impl Gateways {
    /// Counts one more user on `name` and returns its number.
    pub(crate) fn acquire(&mut self, name: &str) -> GatewayIdx {
        if let Some(&idx) = self.by_name.get(name) {
            self.slot_mut(idx).users += 1;
            return idx;
        }
        let name: Arc<str> = Arc::from(name);
        let interned = Interned {
            name: name.clone(),
            users: 1,
        };
        let idx = match self.free.pop() {
            Some(idx) => {
                self.slots[idx as usize - 1] = Some(interned);
                idx
            }
            None => {
                self.slots.push(Some(interned));
                GatewayIdx::try_from(self.slots.len()).expect("fewer than 4 billion gateways")
            }
        };
        self.by_name.insert(name, idx);
        idx
    }

    /// Counts one user less on `idx`, forgetting the gateway with its last user.
    pub(crate) fn release(&mut self, idx: GatewayIdx) {
        if idx == NOT_CONNECTED {
            return;
        }
        let slot = self.slot_mut(idx);
        slot.users -= 1;
        if slot.users == 0 {
            let gone = self.slots[idx as usize - 1].take().expect("checked above");
            self.by_name.remove(&gone.name);
            self.free.push(idx);
        }
    }

    /// The id of gateway `idx` (which must be held by some user).
    pub(crate) fn name(&self, idx: GatewayIdx) -> &Arc<str> {
        &self.slots[idx as usize - 1]
            .as_ref()
            .expect("a connected user holds its gateway")
            .name
    }

    /// How many gateways hold at least one user.
    pub(crate) fn len(&self) -> usize {
        self.by_name.len()
    }

    fn slot_mut(&mut self, idx: GatewayIdx) -> &mut Interned {
        self.slots[idx as usize - 1]
            .as_mut()
            .expect("a connected user holds its gateway")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_users_and_forgets_idle_gateways() {
        let mut gateways = Gateways::default();
        let a = gateways.acquire("gw-a");
        let b = gateways.acquire("gw-b");
        assert_ne!(a, NOT_CONNECTED);
        assert_ne!(a, b);
        assert_eq!(gateways.acquire("gw-a"), a);
        assert_eq!(&**gateways.name(a), "gw-a");

        gateways.release(a);
        assert_eq!(gateways.len(), 2, "gw-a still holds one user");
        gateways.release(a);
        assert_eq!(gateways.len(), 1);
        // The number is reused by the next new gateway.
        assert_eq!(gateways.acquire("gw-c"), a);
        assert_eq!(&**gateways.name(a), "gw-c");
        assert_eq!(&**gateways.name(b), "gw-b");
        gateways.release(NOT_CONNECTED);
    }
}

//! What this build of the server implements. Discovery documents and the CapabilityStatement
//! are derived from here, so they advertise only what works; each feature that lands adds
//! itself.

use smart_protocol::discovery::Features;

pub fn current() -> Features {
    Features::default()
}

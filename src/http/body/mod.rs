//! Request bodies of the admin endpoints: the size cap and deadline
//! ([`limit`]), the
//! JSON payload type whose errors name the field at fault ([`json`]), and
//! the mapping of extraction errors onto problem responses ([`fault`]).

mod fault;
mod json;
mod limit;

pub use fault::RequestFault;
pub use json::{FromJsonFields, JsonBody, JsonFields};
pub use limit::{ADMIN_BODY_TIMEOUT, BodyLimit, MAX_ADMIN_BODY_BYTES};

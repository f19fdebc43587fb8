//! Request plumbing: a request is plain data ([`Request`]), sent in exactly one place
//! ([`VaultClient::execute`](crate::VaultClient::execute)), which adds headers, retries,
//! redirects, timeouts, tracing and error mapping for every API area.
//!
//! Two files, one direction: `request` holds the data (requests, replies, path encoding,
//! error-reply mapping; no IO) and `send` the send loop, which uses it and the client's
//! transport. Nothing in `request` knows the client.

pub(crate) mod request;
mod send;

pub use request::{
    decode_reply, join_path, CallOptions, Request, Response, TokenChoice, FORWARD_ACTIVE_NODE,
    INCONSISTENT_HEADER, INDEX_HEADER, NAMESPACE_HEADER, REQUEST_HEADER, TOKEN_HEADER,
};
pub(crate) use request::{parse_error_body, redirect_target};

//! The client side: accepting connections, establishing who the client is,
//! choosing the route, judging, and forwarding or refusing.

pub mod access;
pub mod body;
pub mod client_ip;
pub mod context;
pub mod evidence;
pub mod forward;
pub mod h2frames;
pub mod headers;
pub mod idle;
pub mod io;
pub mod listener;
pub mod proxy_protocol;
pub mod refusal;
pub mod respond;
pub mod route;
pub mod service;

pub use listener::Server;

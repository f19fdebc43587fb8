//! Mounts (secret engines), auth methods, audit devices and the sanitized configuration.

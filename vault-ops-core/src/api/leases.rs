//! leases (being written)

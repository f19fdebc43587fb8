//! The `deadpool-postgres` pool on the shared [`Connector`].

use std::future::Future;
use std::pin::Pin;

use deadpool_postgres::{Connect, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use super::{Connected, Connector, WatchedPoolBuilder};
use crate::RotationError;

impl Connect for Connector {
    fn connect(
        &self,
        _pg_config: &tokio_postgres::Config,
    ) -> Pin<Box<dyn Future<Output = Result<Connected, tokio_postgres::Error>> + Send + '_>> {
        Box::pin(Connector::connect(self))
    }
}

impl WatchedPoolBuilder {
    /// A [`deadpool_postgres::Pool`] (feature `deadpool`): the pool's create timeout bounds
    /// each connection attempt, connections are recycled without a query
    /// ([`RecyclingMethod::Fast`]). Fails on settings that cannot work (an insecure TLS mode
    /// without [`allow_insecure_local_dev`](Self::allow_insecure_local_dev), an unusable
    /// CA).
    pub fn build_deadpool(self) -> Result<Pool, RotationError> {
        let (connector, max_size, create_timeout) = self.into_connector()?;
        let manager = Manager::from_connect(
            tokio_postgres::Config::new(),
            connector,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(max_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(create_timeout))
            .build()
            .map_err(|e| RotationError::Config(format!("the pool: {e}")))
    }
}

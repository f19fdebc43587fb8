//! The `bb8` pool on the shared [`Connector`].

use bb8::{Builder, ManageConnection, Pool};
use tokio_postgres::Client;

use super::{Connector, WatchedPoolBuilder};
use crate::RotationError;

/// bb8's own default for `connection_timeout`.
const BB8_DEFAULT_CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The `bb8` connection manager of a [`WatchedPoolBuilder`] (feature `bb8`): connections are
/// [`tokio_postgres::Client`]s, as with `bb8-postgres`; new ones use the watcher's newest
/// credential (see the [module docs](super)).
pub struct WatchedManager {
    connector: Connector,
}

impl std::fmt::Debug for WatchedManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchedManager")
            .field("watcher", &self.connector.watcher)
            .field("host", &self.connector.host)
            .field("port", &self.connector.port)
            .finish_non_exhaustive()
    }
}

impl ManageConnection for WatchedManager {
    type Connection = Client;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        // The connection task ends by itself once the client is dropped.
        let (client, _task) = self.connector.connect().await?;
        Ok(client)
    }

    async fn is_valid(&self, conn: &mut Client) -> Result<(), tokio_postgres::Error> {
        conn.simple_query("").await.map(|_| ())
    }

    fn has_broken(&self, conn: &mut Client) -> bool {
        conn.is_closed()
    }
}

impl WatchedPoolBuilder {
    /// A `bb8::Pool` of [`max_size`](Self::max_size) connections (feature `bb8`), bb8's
    /// defaults otherwise (see [`build_bb8_with`](Self::build_bb8_with)).
    pub fn build_bb8(self) -> Result<Pool<WatchedManager>, RotationError> {
        let max_size = u32::try_from(self.max_size).unwrap_or(u32::MAX);
        self.build_bb8_with(Pool::builder().max_size(max_size))
    }

    /// A `bb8::Pool` from your `bb8::Builder` (feature `bb8`): its size, lifetimes, idle
    /// settings, `min_idle` and `test_on_check_out` are kept (this builder's
    /// [`max_size`](Self::max_size) is not applied); `connection_timeout` (how long `get`
    /// waits in all) becomes the longer of bb8's default 30 s and one connection attempt's
    /// bound (so `get` can wait out the `28P01` retry), and `retry_connection` is switched
    /// off: the one retry after `28P01` is the connector's, and other login errors (a
    /// refused password above all) are not tried again in a loop. Connections are opened in
    /// the background (`build_unchecked`), so this needs a tokio runtime but no database yet.
    pub fn build_bb8_with(
        self,
        builder: Builder<WatchedManager>,
    ) -> Result<Pool<WatchedManager>, RotationError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RotationError::Config(
                "a bb8 pool must be built inside a tokio runtime (it opens connections in the background)".into(),
            ));
        }
        let (connector, _, create_timeout) = self.into_connector()?;
        Ok(builder
            .connection_timeout(create_timeout.max(BB8_DEFAULT_CONNECTION_TIMEOUT))
            .retry_connection(false)
            .build_unchecked(WatchedManager { connector }))
    }
}

//! MongoDB: the reference source. Connection and measurement (`dbStats`).

use std::time::Duration;

use mongodb::bson::{Document, doc};
use mongodb::options::ClientOptions;

use super::{BackendError, timed};
use crate::config::MongoConn;
use crate::resource::Usage;

const NAME: &str = "mongodb";

/// A MongoDB client bound to the application's database.
#[derive(Clone)]
pub struct Mongo {
    db: mongodb::Database,
    timeout: Duration,
}

impl Mongo {
    /// Parses the URI and builds the client (connections are made on first use).
    pub async fn connect(conn: &MongoConn, timeout: Duration) -> Result<Self, BackendError> {
        let mut options = timed(NAME, timeout, ClientOptions::parse(conn.uri.expose())).await?;
        options.server_selection_timeout = Some(timeout);
        options.connect_timeout = Some(timeout);
        options.app_name = Some("resource-janitor".into());
        let client = mongodb::Client::with_options(options).map_err(|e| BackendError::Config {
            backend: NAME,
            message: e.to_string(),
        })?;
        Ok(Self {
            db: client.database(&conn.database),
            timeout,
        })
    }

    /// The database, for reference checks.
    pub fn database(&self) -> &mongodb::Database {
        &self.db
    }

    /// `ping`.
    pub async fn ping(&self) -> Result<(), BackendError> {
        timed(NAME, self.timeout, self.db.run_command(doc! { "ping": 1 })).await?;
        Ok(())
    }

    /// Documents and data size of the database (`dbStats`). MongoDB has no budget: its
    /// usage is reported, never acted on.
    pub async fn measure(&self) -> Result<Usage, BackendError> {
        let stats: Document = timed(
            NAME,
            self.timeout,
            self.db.run_command(doc! { "dbStats": 1 }),
        )
        .await?;
        let number = |k: &str| -> u64 {
            match stats.get(k) {
                Some(mongodb::bson::Bson::Int32(v)) => (*v).max(0) as u64,
                Some(mongodb::bson::Bson::Int64(v)) => (*v).max(0) as u64,
                Some(mongodb::bson::Bson::Double(v)) => v.max(0.0) as u64,
                _ => 0,
            }
        };
        Ok(Usage {
            total_items: number("objects"),
            size_bytes: Some(number("dataSize")),
            usage_fraction: 0.0,
            oldest_age_hours: None,
        })
    }
}

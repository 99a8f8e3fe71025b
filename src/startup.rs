//! Wiring: settings in, a running bot out. [`App::build`] opens and
//! migrates the database, loads and checks the flows (refusing to start on
//! errors), builds the account actions and the engine.

use crate::config::Settings;
use crate::engine::{AccountActions, Engine, EngineConfig, NoAccountService};
use crate::flow::{self, Diagnostic};
use crate::store::{self, OpenError, SqlStore};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] OpenError),
    #[error("the flow files have {} problem(s); run `recoverbot flows check` (first: {})", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Flows(Vec<Diagnostic>),
}

pub struct App {
    pub settings: Settings,
    pub store: Arc<SqlStore>,
    pub engine: Arc<Engine>,
}

impl App {
    /// Builds the app with the given account actions.
    pub async fn build(settings: Settings, actions: Arc<dyn AccountActions>) -> Result<Self, StartError> {
        let flows = flow::load_dir(&settings.engine.flows_dir).map_err(StartError::Flows)?;
        let store = Arc::new(store::open(&settings.database).await?);
        if settings.database.migrate_on_start {
            store.migrate().await?;
        }
        let engine = Arc::new(Engine::new(
            flows,
            store.clone(),
            actions,
            EngineConfig::from_settings(&settings),
        ));
        Ok(Self { settings, store, engine })
    }

    /// Builds the app with no account service (every action falls back).
    pub async fn build_offline(settings: Settings) -> Result<Self, StartError> {
        Self::build(settings, Arc::new(NoAccountService)).await
    }
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

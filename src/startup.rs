//! Wiring: settings in, a running bot out. [`App::build`] opens and
//! migrates the database, loads and checks the flows (refusing to start on
//! errors), builds the account actions and the engine.

use crate::account_api::{AccountClient, ApiActions, ClientOptions};
use crate::config::Settings;
use crate::delivery::{Delivery, DeliverySettings};
use crate::engine::{AccountActions, Engine, EngineConfig};
use crate::flow::{self, Diagnostic};
use crate::simulator::{self, RunningSim};
use crate::status::{Status, StatusConfig};
use crate::store::{self, Database, OpenError};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] OpenError),
    #[error("the flow files have {} problem(s); run `recoverbot flows check` (first: {})", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Flows(Vec<Diagnostic>),
    /// A setting is missing or unusable: the operator must fix the configuration.
    #[error("{0}")]
    Config(String),
    #[error("cannot start the account simulator: {0}")]
    Simulator(String),
}

impl StartError {
    /// Configuration problems exit with 2, like a bad config file.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 2,
            _ => 1,
        }
    }
}

/// Which account service the bot talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountMode {
    /// `chat`: the configured service, or the simulator in-process when
    /// `account_api.base_url` is unset.
    SimulatorByDefault,
    /// `serve`: the configured service; the simulator only when
    /// `account_api.use_simulator` says so. Never a silent fallback.
    ExplicitOnly,
}

pub struct App {
    pub settings: Settings,
    pub store: Arc<dyn Database>,
    pub engine: Arc<Engine>,
    /// Sends what the engine (and later the desk and the announcer) queue;
    /// started by [`App::spawn_delivery`], fed by each channel's transport.
    pub delivery: Arc<Delivery>,
    /// The status watcher (started by [`App::spawn_status`]), which keeps
    /// the engine's status board current and announces incidents.
    pub status: Arc<Status>,
    /// The in-process simulator, when the bot runs against it.
    pub simulator: Option<RunningSim>,
    /// A line for the operator: which account API is in use.
    pub account_api_description: String,
    /// This instance's name in leases (`<host>-<pid>-<random>`).
    pub instance: Arc<str>,
}

impl App {
    /// Opens the database, loads the flows, connects the account service.
    pub async fn build(settings: Settings, mode: AccountMode) -> Result<Self, StartError> {
        let flows = load_flows(&settings).map_err(StartError::Flows)?;
        let store = store::open(&settings.database).await?;
        if settings.database.migrate_on_start {
            store.migrate().await?;
        }
        let (actions, simulator, description) =
            account_actions(&settings, mode, store.clone()).await?;
        let engine = Arc::new(Engine::new(
            flows,
            store.clone(),
            actions,
            EngineConfig::from_settings(&settings),
        ));
        let instance: Arc<str> = crate::lease::holder_name().into();
        let delivery = Delivery::new(store.clone(), delivery_settings(&*store, &instance));
        engine.set_waker(Arc::new(delivery.clone()));
        let page = settings
            .status
            .url
            .clone()
            .or_else(|| simulator.as_ref().map(|s| s.url.clone()));
        let mut status_config =
            StatusConfig::from_settings(&settings, page.as_deref()).map_err(StartError::Config)?;
        status_config.holder = instance.to_string();
        let status = Status::new(
            store.clone(),
            engine.status_board(),
            Arc::new(delivery.clone()),
            status_config,
        )
        .map_err(StartError::Config)?;
        Ok(Self {
            settings,
            store,
            engine,
            delivery,
            status,
            simulator,
            account_api_description: description,
            instance,
        })
    }

    /// Stops background parts and closes the database.
    /// Runs delivery until `shutdown` fires.
    pub fn spawn_delivery(
        &self,
        shutdown: crate::shutdown::Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.delivery.clone().run(shutdown))
    }

    /// Watches the status page until `shutdown` fires.
    pub fn spawn_status(&self, shutdown: crate::shutdown::Shutdown) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.status.clone().run(shutdown))
    }

    /// One look at the status page now, then the board (start-up, tests).
    pub async fn sync_status(&self) {
        if let Err(e) = self.status.poll_once().await {
            tracing::warn!(error = %e, "status: cannot read the status page");
        }
        self.status.refresh_board().await;
    }

    pub async fn shut_down(self) {
        if let Some(sim) = self.simulator {
            sim.stop().await;
        }
        self.store.close().await;
    }
}

/// Delivery as the store allows: on PostgreSQL, shared by instances, each
/// chat drained under a lease; otherwise one instance, no leases.
fn delivery_settings(store: &dyn Database, instance: &Arc<str>) -> DeliverySettings {
    DeliverySettings {
        chat_leases: (store.backend() == store::Backend::Postgres).then(|| instance.clone()),
        ..DeliverySettings::default()
    }
}

/// The configured flows: `engine.flows_dir`, or the built-in set.
pub fn load_flows(settings: &Settings) -> Result<flow::FlowSet, Vec<Diagnostic>> {
    flow::load_configured(
        settings.engine.flows_dir.as_deref(),
        settings.flows.max_file_bytes,
    )
}

async fn account_actions(
    settings: &Settings,
    mode: AccountMode,
    store: Arc<dyn Database>,
) -> Result<(Arc<dyn AccountActions>, Option<RunningSim>, String), StartError> {
    let api = &settings.account_api;
    let use_sim =
        api.base_url.is_none() && (mode == AccountMode::SimulatorByDefault || api.use_simulator);
    let (base_url, token, simulator, description) = if let Some(url) = &api.base_url {
        let token = api.token.clone().ok_or_else(|| {
            StartError::Config(
                "account_api.token is not set: export RECOVERBOT__ACCOUNT_API__TOKEN".into(),
            )
        })?;
        let shown = crate::config::masked_url(url);
        (url.clone(), token, None, format!("account API: {shown}"))
    } else if use_sim {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| StartError::Simulator(e.to_string()))?;
        let running = simulator::start(&settings.simulator, listener)
            .await
            .map_err(StartError::Simulator)?;
        let description = format!(
            "account API: the built-in simulator at {} (demo accounts; no real mail is sent)",
            running.url
        );
        (
            running.url.clone(),
            running.token.clone(),
            Some(running),
            description,
        )
    } else {
        return Err(StartError::Config(
            "account_api.base_url is not set: export RECOVERBOT__ACCOUNT_API__BASE_URL (and RECOVERBOT__ACCOUNT_API__TOKEN), or set account_api.use_simulator = true for a demo".into(),
        ));
    };
    let client = AccountClient::new(&base_url, &token, ClientOptions::from(api), store)
        .map_err(|e| StartError::Config(e.to_string()))?;
    let actions = ApiActions::new(Arc::new(client));
    Ok((Arc::new(actions), simulator, description))
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

/// Deletes what has outlived its purpose, every hour, until shutdown:
/// dedupe records, old transcripts, spent idempotency records, rate windows.
/// With several instances, one at a time purges (the `job:purge` lease).
pub async fn purge_periodically(
    store: Arc<dyn Database>,
    settings: Settings,
    instance: Arc<str>,
    shutdown: crate::shutdown::Shutdown,
) {
    let leases = store.clone();
    crate::lease::run_periodically(
        leases,
        instance,
        "purge",
        Duration::from_secs(3600),
        shutdown,
        || purge_once(store.as_ref(), &settings),
    )
    .await;
}

/// One purge pass.
async fn purge_once(store: &dyn Database, settings: &Settings) {
    use crate::engine::ports::PurgeBefore;
    let hour = 3_600_000i64;
    let now = crate::domain::now_millis();
    let dedupe = i64::try_from(settings.engine.dedupe_retention_hours).unwrap_or(72) * hour;
    let before = PurgeBefore {
        processed_events: now - dedupe,
        transcript: now
            - i64::try_from(settings.engine.transcript_retention_days).unwrap_or(90) * 24 * hour,
        // Idempotency keys must outlive any redelivery of their event.
        idempotency: now - dedupe.max(24 * hour),
        rate_limits: now,
        // Delivered and failed messages: kept an hour, long enough for
        // a proof of arrival after a restart to find its entry.
        outbox: now - hour,
        subscriptions: now,
    };
    match store.purge(before).await {
        Ok(report) => tracing::info!(?report, "purged old records"),
        Err(e) => tracing::warn!(error = %e, "purge failed"),
    }
}

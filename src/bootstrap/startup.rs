//! `Application`: the composition root. Picks the adapters the settings ask
//! for, wires the services, binds the listener, and serves until told to
//! stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_redis::Pool;
use poem::EndpointExt;
use poem::endpoint::BoxEndpoint;
use url::Url;

use crate::adapters::dragonfly::DragonflyDeployLog;
use crate::adapters::dragonfly::{
    DragonflyCache, DragonflyDeliveryLedger, DragonflyEventRelay, DragonflyFleetLock,
    DragonflyInvalidationBus, InvalidationNotice, Subscription, build_pool, database_of,
    events_channel, flight_channel, invalidation_channel, run_event_listener, run_listener,
    webhook_delivery_prefix,
};
use crate::adapters::github::{GithubHttp, GithubHttpConfig};
use crate::adapters::memory::MemoryCache;
use crate::adapters::memory::MemoryDeployLog;
use crate::adapters::otlp::OtlpTelemetry;
use crate::bootstrap::config::Settings;
use crate::bootstrap::server::{self, ConnectionRules, ServerLimits};
use crate::bootstrap::version;
use crate::domain::{CacheNamespace, MAX_BODY_BYTES, RepoExclusions};
use crate::http::{self, ApiParts, HealthApi, OrgApi, ProxyEndpoint, SummaryApi};
use crate::http::{AdminAccess, AdminTokens, CacheApi, DeployApi, EventsEndpoint, WebhookEndpoint};
use crate::ports::{CacheStore, RequestExport, TeeTelemetry, Telemetry, UpstreamGithub};
use crate::ports::{DeliveryLedger, DeployLog};
use crate::service::cache_admin::CacheAdminService;
use crate::service::deploys::{DeployService, ResilientDeployLog};
use crate::service::events::LiveEvents;
use crate::service::health::{HealthService, Readiness};
use crate::service::org::{
    DiscoveryTask, OrgDirectory, OrgDiscovery, OrgDiscoveryConfig, OrgService, REFRESH_EVERY,
};
use crate::service::proxy::{
    FlightNotices, GatedUpstream, ProxyLimits, ProxyPolicy, ProxyService, ProxyTarget, UpstreamGate,
};
use crate::service::stats::CacheCounters;
use crate::service::summary::SummaryService;
use crate::service::tiered::{RemoteTier, TieredCache};
use crate::service::webhook::{ServedRepos, WebhookService};

/// Largest GitHub body chimney accepts; larger ones are neither cached nor
/// truncated.
pub const MAX_UPSTREAM_BODY_BYTES: usize = MAX_BODY_BYTES;

/// How long in-flight requests may take to finish after a stop signal.
const GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(5);

/// Most concurrent HTTP/2 streams per connection (CONTRACT 2).
const HTTP2_MAX_STREAMS: u32 = 100;

/// A built, bound application, ready to serve.
pub struct Application {
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    routes: BoxEndpoint<'static>,
    limits: ServerLimits,
    background: Background,
}

/// Work that runs beside the server for as long as it serves; started by
/// [`Application::run_until_stopped`], stopped when it returns.
struct Background {
    cache: TieredCache,
    redis: Option<Url>,
    /// The deployment's invalidation channel.
    channel: String,
    /// The deployment's finished-fetch channel and where its notices go
    /// (fleet single flight).
    flights: (String, FlightNotices),
    instance_id: String,
    discovery: Option<OrgDiscovery>,
    /// Turned off when the stop signal arrives.
    readiness: Readiness,
    /// How long requests are still served after the stop signal.
    shutdown_grace: Duration,
    /// Pushes deploy events that Dragonfly missed, once it answers.
    deploy_log: Arc<ResilientDeployLog>,
    /// The live events, and the channel other instances publish theirs on.
    events: LiveEvents,
    events_channel: String,
}

impl Application {
    /// Binds the listen address (port 0 picks a free port) and wires every
    /// adapter and service the settings ask for. Nothing here contacts
    /// Dragonfly or GitHub, and no background work starts yet.
    ///
    /// `request_export` receives each request's span and log record
    /// ([`crate::bootstrap::telemetry::TelemetryGuard::request_exporter`]);
    /// `None` exports nothing.
    ///
    /// # Errors
    /// Fails when the address cannot be bound or an adapter cannot be built.
    pub async fn build(
        settings: Settings,
        request_export: Option<Arc<dyn RequestExport>>,
    ) -> anyhow::Result<Self> {
        let (routes, background) = wire(&settings, request_export)?;
        let listener = tokio::net::TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("failed to bind {}", settings.addr))?;
        let local_addr = listener
            .local_addr()
            .context("failed to read the bound address")?;
        tracing::info!(addr = %local_addr, repo = %settings.repo, "chimney listening");
        let limits = ServerLimits {
            max_connections: settings.max_connections,
            connection: ConnectionRules {
                header_timeout: settings.header_read_timeout,
                http2_max_streams: HTTP2_MAX_STREAMS,
            },
        };
        Ok(Self {
            listener,
            local_addr,
            routes,
            limits,
            background,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Starts the background work (Dragonfly probe, invalidation listener,
    /// org discovery, deploy replay) and serves (within the connection
    /// limits, see `bootstrap::server`) until `shutdown` completes. Then
    /// `/readyz` answers 503 while requests are still served for the
    /// shutdown grace (so a load balancer moves traffic away first), and
    /// only then does the server stop accepting and give in-flight requests
    /// up to 5 s.
    ///
    /// # Errors
    /// Fails when the server cannot run on the bound listener.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Background {
            cache,
            redis,
            channel,
            flights,
            instance_id,
            discovery,
            readiness,
            shutdown_grace,
            deploy_log,
            events,
            events_channel,
        } = self.background;
        let _event_relay = spawn_event_listener(
            redis.clone(),
            events_channel,
            instance_id.clone(),
            events.clone(),
        );
        let _cache_tasks = CacheTasks::spawn(redis, channel, flights, &cache, instance_id);
        let _discovery = DiscoveryTask::spawn(discovery);
        let _deploy_replay = AbortOnDrop(tokio::spawn(deploy_log.run_replay()));
        server::serve(
            self.listener,
            self.routes,
            self.limits,
            drain_after(shutdown, readiness, events, shutdown_grace),
            GRACEFUL_SHUTDOWN,
        )
        .await
        .context("server failed")
    }
}

/// Completes `grace` after `signal`: from the signal on, the instance says
/// it is not ready but keeps serving, then the server closes its listener.
async fn drain_after(
    signal: impl Future<Output = ()> + Send + 'static,
    readiness: Readiness,
    events: LiveEvents,
    grace: Duration,
) {
    signal.await;
    readiness.stop_taking_traffic();
    // Open event streams end now: their browsers reconnect to an instance
    // that stays, and none holds the shutdown up.
    events.close();
    if !grace.is_zero() {
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "not ready: serving through the shutdown grace before closing the listener"
        );
        tokio::time::sleep(grace).await;
    }
}

/// The composition root proper: adapters chosen by the settings, services
/// over them, and the route tree over the services.
fn wire(
    settings: &Settings,
    request_export: Option<Arc<dyn RequestExport>>,
) -> anyhow::Result<(BoxEndpoint<'static>, Background)> {
    anyhow::ensure!(
        !settings.sends_token_in_clear(),
        "refusing to send GITHUB_TOKEN over plain http to {} (use https, or set CHIMNEY_ALLOW_INSECURE_GITHUB_URL=true)",
        settings.github_api_url.host_str().unwrap_or("?")
    );
    let counters = Arc::new(CacheCounters::default());
    let instance_id = instance_id();
    // Everything this deployment keeps in Dragonfly is scoped by it.
    let namespace = CacheNamespace::of_deployment(settings.org.as_deref(), &settings.repo);
    // One lazily connecting pool serves the cache tier and the deploy log.
    let pool = settings
        .redis
        .as_ref()
        .map(|url| build_pool(url, settings.redis_timeout))
        .transpose()
        .context("failed to set up the Dragonfly pool")?;
    let tiered = build_cache(settings, pool.clone(), &namespace, &instance_id)?;
    let instruments = build_telemetry(&tiered);
    // Every event goes to the OpenTelemetry instruments and to the counters
    // that /healthz and /api/cache/stats read.
    let telemetry: Arc<dyn Telemetry> = Arc::new(TeeTelemetry::new(
        Arc::clone(&instruments) as Arc<dyn Telemetry>,
        Arc::clone(&counters) as Arc<dyn Telemetry>,
    ));
    let tiered = tiered.with_telemetry(telemetry.clone());
    let cache: Arc<dyn CacheStore> = Arc::new(tiered.clone());
    let upstream: Arc<dyn UpstreamGithub> = Arc::new(
        GithubHttp::new(GithubHttpConfig {
            base_url: settings.github_api_url.clone(),
            token: settings.github_token.clone(),
            timeout: settings.upstream_timeout,
            max_body_bytes: MAX_UPSTREAM_BODY_BYTES,
        })
        .context("failed to build the GitHub client")?,
    );
    // One gate per token: the proxy feeds and consults it, and every other
    // caller goes through `GatedUpstream`.
    let gate = Arc::new(UpstreamGate::new(settings.rate_limit_reserve));
    let proxy = ProxyService::new(
        Arc::clone(&cache),
        Arc::clone(&upstream),
        settings.ttl.clone(),
        settings.github_api_url.as_str(),
        &ProxyLimits {
            upstream_concurrency: settings.upstream_concurrency,
            upstream_queue: settings.upstream_queue,
            upstream_queue_timeout: settings.upstream_queue_timeout,
        },
        ProxyPolicy {
            paths: settings.proxy_paths.clone(),
            negative_ttl: settings.negative_ttl,
            stale_while_revalidate: settings.stale_while_revalidate,
            gate: Arc::clone(&gate),
            failure_backoff: settings.failure_backoff,
        },
    )
    .with_telemetry(telemetry.clone());
    let proxy = match &pool {
        Some(pool) => proxy.with_fleet(
            Arc::new(build_fleet_lock(
                settings,
                pool.clone(),
                &namespace,
                &instance_id,
            )?),
            settings.upstream_timeout,
        ),
        None => proxy,
    };
    let flights = (flight_channel(&namespace), proxy.flight_notices());
    let gated: Arc<dyn UpstreamGithub> = Arc::new(GatedUpstream::new(upstream, gate));
    let default_target = ProxyTarget {
        repo: settings.repo.clone(),
        local_prefix: http::PROXY_PREFIX.to_owned(),
        is_default: true,
    };
    let org_directory = OrgDirectory::new();
    let discovery = settings.org.as_ref().map(|org| {
        OrgDiscovery::new(
            Arc::clone(&gated),
            OrgDiscoveryConfig {
                org: org.clone(),
                exclusions: RepoExclusions::new(&settings.repos_exclude),
                api_base: settings.github_api_url.to_string(),
                refresh_every: REFRESH_EVERY,
            },
            org_directory.clone(),
        )
    });
    let events = build_events(settings, pool.as_ref(), &namespace, &instance_id)?;
    let health = HealthService::new(settings.repo.clone(), tiered.clone(), Arc::clone(&counters));
    let readiness = Readiness::default();
    let summary = SummaryService::with_events(
        proxy.clone(),
        cache,
        default_target.clone(),
        &settings.summary_workflow,
        version::WGMESH_VERSION,
        events.clone(),
    );
    let org = OrgService::new(
        settings.org.clone(),
        org_directory.clone(),
        proxy.clone(),
        default_target.clone(),
    );
    let ledger = pool.clone().map(|pool| {
        Arc::new(DragonflyDeliveryLedger::new(
            pool,
            settings.redis_timeout,
            webhook_delivery_prefix(&namespace),
        )) as Arc<dyn DeliveryLedger>
    });
    let deploy_log = build_deploy_log(pool, &namespace, settings.redis_timeout);
    let deploys = DeployService::new(Arc::clone(&deploy_log) as Arc<dyn DeployLog>)
        .with_telemetry(telemetry.clone());
    let cache_admin = CacheAdminService::new(
        tiered.clone(),
        proxy.clone(),
        default_target,
        counters,
        settings.invalidate_all_allowed,
    )
    .with_telemetry(telemetry.clone())
    .with_events(events.clone());
    let webhook = WebhookService::new(
        cache_admin.clone(),
        proxy.clone(),
        summary.clone(),
        ServedRepos {
            default: settings.repo.clone(),
            org: settings.org.as_ref().map(|_| org_directory.clone()),
        },
        ledger,
    );
    let mut proxy_endpoint = ProxyEndpoint::new(proxy, settings.repo.clone());
    if settings.org.is_some() {
        proxy_endpoint = proxy_endpoint.with_org(org_directory);
    }
    let routes = http::routes(
        ApiParts {
            proxy: proxy_endpoint,
            health: HealthApi::new(
                Arc::new(health),
                readiness.clone(),
                version::CHIMNEY_VERSION,
                version::WGMESH_VERSION,
            ),
            summary: SummaryApi::new(summary),
            org: OrgApi::new(org),
            deploys: DeployApi::new(Arc::new(deploys)).with_events(events.clone()),
            cache: CacheApi::new(Arc::new(cache_admin)),
            admin: AdminAccess {
                tokens: AdminTokens {
                    deploy: settings.deploy_token.clone(),
                    invalidate: settings.invalidate_token.clone(),
                },
                cors_origins: settings.cors_origins.clone(),
                body_timeout: settings.admin_body_timeout,
            },
            telemetry,
            request_export,
            metrics: instruments,
            webhook: WebhookEndpoint::new(
                webhook,
                settings.github_webhook_secret.clone(),
                settings.admin_body_timeout,
            ),
            events: EventsEndpoint::new(events.clone(), settings.sse_heartbeat),
        },
        &settings.docs,
    )
    .map_to_response()
    .boxed();
    let background = Background {
        cache: tiered,
        redis: settings.redis.clone(),
        channel: invalidation_channel(&namespace),
        flights,
        instance_id,
        discovery,
        readiness,
        shutdown_grace: settings.shutdown_grace,
        deploy_log,
        events,
        events_channel: events_channel(&namespace),
    };
    Ok((routes, background))
}

/// The application's metric instruments: on the global meter provider
/// (exported once `bootstrap::telemetry` has installed the OTLP one, a no-op
/// otherwise) and in this application's own `/api/metrics` registry.
fn build_telemetry(tiered: &TieredCache) -> Arc<OtlpTelemetry> {
    let memory = Arc::clone(tiered.memory());
    let meter = opentelemetry::global::meter(crate::bootstrap::telemetry::INSTRUMENTATION_SCOPE);
    Arc::new(
        OtlpTelemetry::new(&meter, Arc::new(move || memory.len() as u64))
            .with_build_info(version::CHIMNEY_VERSION, version::chimney_commit()),
    )
}

/// A name for this process on the invalidation channel, so it can skip its
/// own announcements: unique enough across the instances sharing a
/// Dragonfly (pid plus start time).
fn instance_id() -> String {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{}-{started:x}", std::process::id())
}

/// Builds the cache tiers: memory, plus Dragonfly over `pool` when one is
/// configured. Dragonfly is not contacted here: the pool connects lazily
/// and the probe decides when to use it.
fn build_cache(
    settings: &Settings,
    pool: Option<Pool>,
    namespace: &CacheNamespace,
    instance_id: &str,
) -> anyhow::Result<TieredCache> {
    // Sharded so that a body at the cap is still kept, on any core count.
    let memory = Arc::new(MemoryCache::with_largest_entry(
        settings.memory_capacity_bytes,
        MAX_UPSTREAM_BODY_BYTES as u64,
    ));
    let (Some(pool), Some(url)) = (pool, &settings.redis) else {
        return Ok(TieredCache::memory_only(memory));
    };
    let store = DragonflyCache::new(pool.clone(), settings.redis_timeout, namespace)
        .with_negative_ttl(settings.negative_ttl);
    let database = database_of(url).context("failed to read the Dragonfly database number")?;
    let bus = DragonflyInvalidationBus::new(
        pool,
        settings.redis_timeout,
        invalidation_channel(namespace),
        instance_id,
        database,
    );
    Ok(TieredCache::with_remote(
        memory,
        RemoteTier {
            store: Arc::new(store),
            bus: Arc::new(bus),
        },
    ))
}

/// The fleet-wide fetch lock (fleet single flight) over `pool`, with this
/// instance's id as its token.
fn build_fleet_lock(
    settings: &Settings,
    pool: Pool,
    namespace: &CacheNamespace,
    instance_id: &str,
) -> anyhow::Result<DragonflyFleetLock> {
    let url = settings
        .redis
        .as_ref()
        .context("a Dragonfly pool without a URL")?;
    let database = database_of(url).context("failed to read the Dragonfly database number")?;
    Ok(DragonflyFleetLock::new(
        pool,
        settings.redis_timeout,
        namespace,
        flight_channel(namespace),
        instance_id,
        database,
    ))
}

/// The live events: fanned out locally, and relayed over Dragonfly's
/// pub/sub when it is configured.
fn build_events(
    settings: &Settings,
    pool: Option<&Pool>,
    namespace: &CacheNamespace,
    instance_id: &str,
) -> anyhow::Result<LiveEvents> {
    let (Some(pool), Some(url)) = (pool, &settings.redis) else {
        return Ok(LiveEvents::local_only());
    };
    let database = database_of(url).context("failed to read the Dragonfly database number")?;
    Ok(LiveEvents::with_relay(Arc::new(DragonflyEventRelay::new(
        pool.clone(),
        settings.redis_timeout,
        events_channel(namespace),
        instance_id,
        database,
    ))))
}

/// Relays the other instances' live events to this one's subscribers,
/// until dropped.
fn spawn_event_listener(
    redis: Option<Url>,
    channel: String,
    instance_id: String,
    events: LiveEvents,
) -> Option<tokio::sync::watch::Sender<bool>> {
    let url = redis?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let deliver = move |event| events.deliver_from_fleet(event);
    tokio::spawn(run_event_listener(
        url,
        channel,
        instance_id,
        deliver,
        stopped,
    ));
    Some(stop)
}

/// The cache's background work, stopped when the server stops: the
/// Dragonfly probe and the cross-instance listener (invalidations and
/// finished fetches).
struct CacheTasks {
    probe: Option<tokio::task::JoinHandle<()>>,
    stop_listener: Option<tokio::sync::watch::Sender<bool>>,
}

impl CacheTasks {
    fn spawn(
        redis: Option<Url>,
        channel: String,
        (flight_channel, flights): (String, FlightNotices),
        tiered: &TieredCache,
        instance_id: String,
    ) -> Self {
        let Some(url) = redis else {
            return Self {
                probe: None,
                stop_listener: None,
            };
        };
        let probe = tokio::spawn(tiered.clone().run_probe());
        let (stop_listener, stopped) = tokio::sync::watch::channel(false);
        let local = tiered.clone();
        let on_notice = move |notice: InvalidationNotice| {
            if notice.origin != instance_id {
                let dropped = local.apply_remote_invalidation(&notice.scope);
                tracing::info!(
                    scope = notice.scope.literal_prefix(),
                    dropped,
                    origin = %notice.origin,
                    "applied an invalidation from another instance"
                );
            }
        };
        let subscriptions = vec![
            Subscription::invalidations(channel, on_notice),
            Subscription::flights(flight_channel, move |notice| flights.deliver(notice)),
        ];
        tokio::spawn(run_listener(url, subscriptions, stopped));
        Self {
            probe: Some(probe),
            stop_listener: Some(stop_listener),
        }
    }
}

impl Drop for CacheTasks {
    fn drop(&mut self) {
        if let Some(probe) = self.probe.take() {
            probe.abort();
        }
        if let Some(stop) = self.stop_listener.take() {
            let _ = stop.send(true);
        }
    }
}

/// A background task, stopped when the server stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The deploy history: the shared Dragonfly list when Dragonfly is
/// configured (with this process's ring as mirror and fallback, see
/// `service::deploys`), else the ring alone. Nothing connects here.
fn build_deploy_log(
    pool: Option<Pool>,
    namespace: &CacheNamespace,
    timeout: Duration,
) -> Arc<ResilientDeployLog> {
    let local: Arc<dyn DeployLog> = Arc::new(MemoryDeployLog::new());
    match pool {
        Some(pool) => {
            let shared = Arc::new(DragonflyDeployLog::new(pool, namespace, timeout));
            Arc::new(ResilientDeployLog::shared(shared, local))
        }
        None => Arc::new(ResilientDeployLog::local_only(local)),
    }
}

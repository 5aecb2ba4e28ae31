//! HR ingestion: the source of truth sends what it knows, a person's current
//! record (state), and the coordinator works out the lifecycle event.
//!
//! - [`state`]: the pure derivation (joiner, mover, leaver, rehire or
//!   nothing), effective times and deterministic event ids;
//! - [`guard`]: the mass-change guard (`source_of_truth.max_leavers`);
//! - this module: [`Ingest`], which compares records with what the store
//!   knows (the last record accepted from the source, else the identity
//!   record), submits the derived events through the engine exactly as
//!   `SubmitEvent` does, remembers each accepted record, and holds a batch
//!   the guard stops until an admin approves it;
//! - [`rpc`]: the `SubmitState`, `SubmitStates`, `ListHeldBatches` and
//!   `DecideHeldBatch` handlers of the lifecycle API.
//!
//! Stored state (table `ingest_state`, migration 0005): space
//! `source_record`, key `source \x1f person`, the last record accepted and the
//! event it derived; space `held_batch` the summaries of held batches, space
//! `held_batch_records` their records. Every record that derived an event is
//! in that event's evidence (audit action `ingest.derived`). Records that
//! change nothing are remembered (for ordering by change time) without an
//! audit record. One coordinator process serialises state submits per person
//! and batches one at a time; several replicas on PostgreSQL do not yet
//! coordinate batches with each other.

pub mod guard;
pub mod rpc;
pub mod state;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use jml_contract::v1 as pb;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;

use crate::engine::{Engine, EngineError};
use crate::event::{InvalidEvent, ValidEvent, format_time, kind_name, kind_to_proto, now_ms};
use crate::policy::EventKindName;
use crate::store::{AuditEntry, IdentityRecord, IngestPut, Store, StoreError};
use state::{Derived, Employment, Prior, SourceRecord};

const SOURCE_RECORD: &str = "source_record";
const HELD_BATCH: &str = "held_batch";
const HELD_BATCH_RECORDS: &str = "held_batch_records";
/// Most records one batch may carry.
pub const MAX_BATCH_RECORDS: usize = 1_000_000;
const PERSON_LOCKS: usize = 64;
const PAGE: u32 = 5000;

/// The last record accepted from the source for a person.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredRecord {
    record: SourceRecord,
    record_hash: String,
    /// The event it derived (empty: none).
    event_id: String,
    /// When it was accepted (Unix ms).
    accepted_at: i64,
}

/// A batch held by the mass-change guard (its records are stored apart).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeldBatchSummary {
    /// `hb-` and a UUID.
    pub batch_id: String,
    /// Who submitted it.
    pub submitter: String,
    /// When it was held (Unix ms).
    pub held_at: i64,
    /// Records in it.
    pub records: u64,
    /// Leavers it would make.
    pub leavers: u64,
    /// Active persons when it was held.
    pub population: u64,
    /// The limit as written.
    pub limit: String,
    /// `held`, `approved` or `rejected`.
    pub state: String,
    /// Who decided.
    pub decided_by: String,
    /// When (Unix ms).
    pub decided_at: Option<i64>,
    /// The decision's comment.
    pub comment: String,
    /// A full snapshot.
    pub full_snapshot: bool,
    /// The source system.
    pub source_system: String,
    /// The submitter's label.
    pub label: String,
    /// The hex SHA-256 of the held records as stored (also in the
    /// `ingest.batch_held` audit record): an approval applies exactly these.
    #[serde(default)]
    pub records_hash: String,
}

fn records_hash(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

impl HeldBatchSummary {
    /// The API form.
    pub fn to_proto(&self) -> pb::HeldBatch {
        pb::HeldBatch {
            batch_id: self.batch_id.clone(),
            submitter: self.submitter.clone(),
            held_at: format_time(Some(self.held_at)),
            records: self.records,
            leavers: self.leavers,
            population: self.population,
            limit: self.limit.clone(),
            state: self.state.clone(),
            decided_by: self.decided_by.clone(),
            decided_at: format_time(self.decided_at),
            full_snapshot: self.full_snapshot,
            source_system: self.source_system.clone(),
            label: self.label.clone(),
            comment: self.comment.clone(),
        }
    }
}

/// A batch of records to evaluate as a whole.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The records, each person at most once.
    pub records: Vec<SourceRecord>,
    /// Persons known as active and not named have left.
    pub full_snapshot: bool,
    /// Derive and count only.
    pub dry_run: bool,
    /// The source system.
    pub source_system: String,
    /// A label for the audit log.
    pub label: String,
}

/// What one record means, before anything is written.
#[derive(Debug, Clone)]
enum Verdict {
    /// This very record was accepted before and derived this event.
    Duplicate(String),
    /// This very record was accepted before and derived nothing.
    SameRecord,
    /// Older than the record last accepted.
    Stale,
    /// A new event.
    Derived { kind: EventKindName, effective_at: Option<i64>, event_id: String },
    /// Nothing changed.
    Unchanged(&'static str),
    /// Nothing to do.
    Ignored(&'static str),
}

#[derive(Debug, Clone)]
struct Assessed {
    record: SourceRecord,
    hash: String,
    prior: Option<Prior>,
    verdict: Verdict,
}

/// HR ingestion's metrics.
struct IngestMetrics {
    held: Gauge,
    derived: Family<KindLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

fn metrics() -> &'static IngestMetrics {
    static METRICS: OnceLock<IngestMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let metrics = IngestMetrics { held: Gauge::default(), derived: Family::default() };
        connector_kit::metrics::register(
            "jml_ingest_held_batches",
            "Batches of state submits held by the mass-change guard, awaiting an admin's decision",
            &metrics.held,
        );
        connector_kit::metrics::register(
            "jml_ingest_events_derived",
            "Lifecycle events derived from state submits, by kind",
            &metrics.derived,
        );
        metrics
    })
}

fn key(source: &str, person: &str) -> String {
    format!("{source}\u{1f}{person}")
}

fn corrupt(what: &'static str, error: &serde_json::Error) -> EngineError {
    EngineError::Store(StoreError::Corrupt { what, message: error.to_string() })
}

fn encode<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// What was known of a person: the last record accepted from the source,
/// unless an identity record was written after it (an event classified by
/// its sender, a baseline), which then says whether the person is active and
/// with which attributes.
fn prior_from(stored: Option<&StoredRecord>, identity: Option<&IdentityRecord>) -> Option<Prior> {
    let from_identity = |identity: &IdentityRecord| Prior {
        employment: if identity.has_left { Employment::Terminated } else { Employment::Active },
        attributes: identity.attributes.clone(),
        changed_at: stored.and_then(|s| s.record.changed_at),
        record_hash: stored.map(|s| s.record_hash.clone()),
    };
    match (stored, identity) {
        (Some(stored), Some(identity)) if identity.updated_at > stored.accepted_at => Some(from_identity(identity)),
        (Some(stored), _) => Some(Prior {
            employment: stored.record.employment,
            attributes: stored.record.attributes.clone(),
            changed_at: stored.record.changed_at,
            record_hash: Some(stored.record_hash.clone()),
        }),
        (None, Some(identity)) => Some(from_identity(identity)),
        (None, None) => None,
    }
}

fn assess(record: SourceRecord, stored: Option<&StoredRecord>, prior: Option<Prior>, now: i64) -> Assessed {
    let hash = record.hash();
    let verdict = match stored {
        Some(stored) if stored.record_hash == hash && !stored.event_id.is_empty() => {
            Verdict::Duplicate(stored.event_id.clone())
        }
        Some(stored) if stored.record_hash == hash => Verdict::SameRecord,
        _ if state::is_stale(&record, prior.as_ref()) => Verdict::Stale,
        _ => match state::derive(&record, prior.as_ref(), now) {
            Derived::Event { kind, effective_at } => {
                Verdict::Derived { kind, effective_at, event_id: state::event_id(&record, &hash, prior.as_ref()) }
            }
            Derived::Unchanged(reason) => Verdict::Unchanged(reason),
            Derived::Ignored(reason) => Verdict::Ignored(reason),
        },
    };
    Assessed { record, hash, prior, verdict }
}

/// What the store knows of the persons of one source, loaded once for a
/// large batch (paged reads) instead of two reads per record.
#[derive(Default)]
struct Known {
    stored: HashMap<String, StoredRecord>,
    identities: HashMap<String, IdentityRecord>,
}

impl Known {
    async fn load(store: &dyn Store, source: &str) -> Result<Self, EngineError> {
        let mut known = Self::default();
        let prefix = key(source, "");
        let mut after = prefix.clone();
        'pages: loop {
            let page = store.ingest_after(SOURCE_RECORD, after.clone(), PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            for (key, value) in page {
                let Some(person) = key.strip_prefix(&prefix) else { break 'pages };
                let stored: StoredRecord =
                    serde_json::from_str(&value).map_err(|e| corrupt("ingest_state.source_record", &e))?;
                known.stored.insert(person.to_owned(), stored);
            }
        }
        let mut after = String::new();
        loop {
            let page = store.identities_after(after.clone(), PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.person_id.clone();
            for (identity, _) in page {
                known.identities.insert(identity.person_id.clone(), identity);
            }
        }
        Ok(known)
    }

    fn prior(&self, person: &str) -> (Option<&StoredRecord>, Option<Prior>) {
        let stored = self.stored.get(person);
        (stored, prior_from(stored, self.identities.get(person)))
    }

    /// Persons known as active.
    fn active(&self) -> Vec<String> {
        let mut people: HashSet<&String> = self.stored.keys().collect();
        people.extend(self.identities.keys());
        let mut active: Vec<String> = people
            .into_iter()
            .filter(|person| self.prior(person).1.is_some_and(|p| p.employment == Employment::Active))
            .cloned()
            .collect();
        active.sort();
        active
    }
}

/// HR ingestion over an engine.
#[derive(Clone)]
pub struct Ingest {
    engine: Engine,
    person_locks: Arc<Vec<Mutex<()>>>,
    batch_lock: Arc<Mutex<()>>,
    /// Per source, when single state submits derived leavers within the
    /// last [`BURST_WINDOW_MS`] (held in memory: a restart forgets a burst).
    bursts: Arc<std::sync::Mutex<HashMap<String, std::collections::VecDeque<i64>>>>,
    /// Per source, the active population and when it was counted.
    population: Arc<std::sync::Mutex<HashMap<String, (u64, i64)>>>,
}

/// A burst: single state submits deriving leavers within this window count
/// as one batch for the mass-change guard.
pub const BURST_WINDOW_MS: i64 = 60 * 60 * 1000;
/// How long a counted population serves the guard of single submits.
const POPULATION_TTL_MS: i64 = 60 * 1000;
/// The label of a batch the guard opened for a burst of single submits.
pub const BURST_LABEL: &str = "burst of single state submits";

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").finish_non_exhaustive()
    }
}

fn counts_add(counts: &mut pb::StateCounts, verdict: &Verdict) {
    match verdict {
        Verdict::Duplicate(_) => counts.duplicates += 1,
        Verdict::SameRecord | Verdict::Unchanged(_) => counts.unchanged += 1,
        Verdict::Stale => counts.stale += 1,
        Verdict::Ignored(_) => counts.ignored += 1,
        Verdict::Derived { kind, .. } => match kind {
            EventKindName::Joiner => counts.joiners += 1,
            EventKindName::Mover => counts.movers += 1,
            EventKindName::Leaver => counts.leavers += 1,
            EventKindName::Rehire => counts.rehires += 1,
        },
    }
}

impl Ingest {
    /// Ingestion over `engine`.
    pub fn new(engine: Engine) -> Self {
        let person_locks = Arc::new((0..PERSON_LOCKS).map(|_| Mutex::new(())).collect());
        let ingest = Self {
            engine,
            person_locks,
            batch_lock: Arc::new(Mutex::new(())),
            bursts: Arc::default(),
            population: Arc::default(),
        };
        let refresh = ingest.clone();
        tokio::spawn(async move {
            if let Err(error) = refresh.refresh_held_gauge().await {
                tracing::warn!(%error, "cannot count held batches");
            }
        });
        ingest
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn person_lock(&self, person: &str) -> &Mutex<()> {
        let mut hash: usize = 0;
        for byte in person.bytes() {
            hash = hash.wrapping_mul(31).wrapping_add(usize::from(byte));
        }
        &self.person_locks[hash % PERSON_LOCKS]
    }

    async fn stored(&self, source: &str, person: &str) -> Result<Option<StoredRecord>, EngineError> {
        match self.engine.store().ingest_get(SOURCE_RECORD, &key(source, person)).await? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| corrupt("ingest_state.source_record", &e)),
        }
    }

    async fn assess_one(&self, record: SourceRecord, now: i64) -> Result<Assessed, EngineError> {
        let stored = self.stored(&record.source_system, &record.person_id).await?;
        let identity = self.engine.store().identity(&record.person_id).await?;
        let prior = prior_from(stored.as_ref(), identity.as_ref());
        Ok(assess(record, stored.as_ref(), prior, now))
    }

    /// One record: derive, submit, remember. Safe to repeat.
    pub async fn submit_state(&self, record: SourceRecord, initiator: &str) -> Result<pb::StateReceipt, EngineError> {
        let _person = self.person_lock(&record.person_id).lock().await;
        let now = now_ms();
        let assessed = self.assess_one(record, now).await?;
        if matches!(assessed.verdict, Verdict::Derived { kind: EventKindName::Leaver, .. })
            && self.burst_exceeds(&assessed.record.source_system, now).await?
        {
            return self.hold_in_burst(assessed, initiator, now).await;
        }
        self.apply(assessed, initiator).await
    }

    /// Counts a leaver of a single submit in its source's burst window;
    /// true when it would exceed `max_leavers` (then it is not counted: it
    /// is held).
    async fn burst_exceeds(&self, source: &str, now: i64) -> Result<bool, EngineError> {
        let Some(max) = self.engine.policy().file.source_of_truth.max_leavers.clone() else { return Ok(false) };
        let cached = self.population.lock().ok().and_then(|p| p.get(source).copied());
        let population = match cached {
            Some((count, at)) if now - at < POPULATION_TTL_MS => count,
            _ => {
                let count = Known::load(self.engine.store().as_ref(), source).await?.active().len() as u64;
                if let Ok(mut cache) = self.population.lock() {
                    cache.insert(source.to_owned(), (count, now));
                }
                count
            }
        };
        let Ok(mut bursts) = self.bursts.lock() else { return Ok(true) };
        let window = bursts.entry(source.to_owned()).or_default();
        while window.front().is_some_and(|at| now - at > BURST_WINDOW_MS) {
            window.pop_front();
        }
        let count = window.len() as u64 + 1;
        if guard::must_hold(Some(&max), count, population).is_some() {
            return Ok(true);
        }
        window.push_back(now);
        Ok(false)
    }

    /// Adds a leaver record to its source's open burst batch (opening one).
    async fn hold_in_burst(
        &self,
        assessed: Assessed,
        initiator: &str,
        now: i64,
    ) -> Result<pb::StateReceipt, EngineError> {
        let _batch = self.batch_lock.lock().await;
        let source = assessed.record.source_system.clone();
        let open = self
            .held_batches(false)
            .await?
            .into_iter()
            .find(|b| b.label == BURST_LABEL && b.source_system == source && b.submitter == initiator);
        let store = self.engine.store();
        match open {
            None => {
                let batch = Batch {
                    records: vec![assessed.record.clone()],
                    source_system: source,
                    label: BURST_LABEL.into(),
                    ..Batch::default()
                };
                let population = self.population.lock().ok().and_then(|p| p.get(&batch.source_system).map(|c| c.0));
                let limit = self
                    .engine
                    .policy()
                    .file
                    .source_of_truth
                    .max_leavers
                    .as_ref()
                    .map_or(0, |m| m.limit(population.unwrap_or_default()));
                self.hold(&batch, initiator, 1, population.unwrap_or_default(), limit, now).await?;
            }
            Some(summary) => {
                let records_text = store
                    .ingest_get(HELD_BATCH_RECORDS, &summary.batch_id)
                    .await?
                    .ok_or_else(|| EngineError::NotFound(format!("records of held batch {}", summary.batch_id)))?;
                let mut records: Vec<SourceRecord> =
                    serde_json::from_str(&records_text).map_err(|e| corrupt("ingest_state.held_batch_records", &e))?;
                records.retain(|r| r.person_id != assessed.record.person_id);
                records.push(assessed.record.clone());
                let grown_text = encode(&records);
                let grown = HeldBatchSummary {
                    records: records.len() as u64,
                    leavers: records.len() as u64,
                    records_hash: records_hash(&grown_text),
                    ..summary.clone()
                };
                let audit = AuditEntry {
                    at: now,
                    principal: initiator.to_owned(),
                    event_id: String::new(),
                    action: "ingest.batch_grown".into(),
                    payload: json!({
                        "batch_id": summary.batch_id,
                        "person_id": assessed.record.person_id,
                        "leavers": grown.leavers,
                        "records_hash": grown.records_hash,
                    }),
                };
                let puts = vec![
                    IngestPut {
                        space: HELD_BATCH_RECORDS.into(),
                        key: summary.batch_id.clone(),
                        value: grown_text,
                        updated_at: now,
                        expected: Some(records_text),
                    },
                    IngestPut {
                        space: HELD_BATCH.into(),
                        key: summary.batch_id.clone(),
                        value: encode(&grown),
                        updated_at: now,
                        expected: Some(encode(&summary)),
                    },
                ];
                store.ingest_put(puts, vec![audit]).await?;
            }
        }
        Ok(preview(&assessed, pb::StateOutcome::Held))
    }

    fn derived_event(assessed: &Assessed) -> Option<ValidEvent> {
        let Verdict::Derived { kind, effective_at, event_id } = &assessed.verdict else { return None };
        Some(ValidEvent {
            event_id: event_id.clone(),
            kind: *kind,
            person_id: assessed.record.person_id.clone(),
            attributes: assessed.record.attributes.clone(),
            effective_at_ms: *effective_at,
            source_system: assessed.record.source_system.clone(),
            urgent: false,
        })
    }

    fn remember(assessed: &Assessed, event_id: &str, now: i64) -> IngestPut {
        let stored = StoredRecord {
            record: assessed.record.clone(),
            record_hash: assessed.hash.clone(),
            event_id: event_id.to_owned(),
            accepted_at: now,
        };
        IngestPut {
            space: SOURCE_RECORD.into(),
            key: key(&assessed.record.source_system, &assessed.record.person_id),
            value: encode(&stored),
            updated_at: now,
            expected: None,
        }
    }

    async fn receipt_of(&self, event_id: &str, duplicate: bool) -> Result<Option<pb::Receipt>, EngineError> {
        Ok(self.engine.store().event(event_id).await?.map(|event| crate::api::receipt(&event, duplicate)))
    }

    /// Writes what an assessed record means and answers for it.
    async fn apply(&self, assessed: Assessed, initiator: &str) -> Result<pb::StateReceipt, EngineError> {
        let mut receipt = pb::StateReceipt {
            person_id: assessed.record.person_id.clone(),
            record_hash: assessed.hash.clone(),
            ..Default::default()
        };
        let now = now_ms();
        match &assessed.verdict {
            Verdict::Duplicate(event_id) => {
                let first = self.receipt_of(event_id, true).await?;
                receipt.outcome = pb::StateOutcome::Duplicate as i32;
                receipt.event_id = event_id.clone();
                if let Some(event) = self.engine.store().event(event_id).await? {
                    receipt.kind = kind_to_proto(event.kind) as i32;
                    receipt.effective_at = format_time(Some(event.effective_at));
                }
                receipt.receipt = first;
            }
            Verdict::SameRecord => {
                receipt.outcome = pb::StateOutcome::Unchanged as i32;
                receipt.reason = "this record was accepted before".into();
            }
            Verdict::Stale => {
                receipt.outcome = pb::StateOutcome::Stale as i32;
                receipt.reason = "older (changed_at) than the record last accepted for the person".into();
            }
            Verdict::Ignored(reason) => {
                receipt.outcome = pb::StateOutcome::Ignored as i32;
                receipt.reason = (*reason).into();
            }
            Verdict::Unchanged(reason) => {
                self.engine.store().ingest_put(vec![Self::remember(&assessed, "", now)], Vec::new()).await?;
                receipt.outcome = pb::StateOutcome::Unchanged as i32;
                receipt.reason = (*reason).into();
            }
            Verdict::Derived { kind, event_id, .. } => {
                let event = Self::derived_event(&assessed)
                    .ok_or_else(|| EngineError::FailedPrecondition("derived event without a verdict".into()))?;
                let outcome = self.engine.submit(event, initiator.to_owned()).await?;
                let audit = AuditEntry {
                    at: now,
                    principal: initiator.to_owned(),
                    event_id: event_id.clone(),
                    action: "ingest.derived".into(),
                    payload: json!({
                        "kind": kind_name(*kind),
                        "record": assessed.record,
                        "record_hash": assessed.hash,
                        "prior_record_hash": assessed.prior.as_ref().and_then(|p| p.record_hash.clone()),
                        "prior_employment": assessed.prior.as_ref().map(|p| p.employment),
                    }),
                };
                self.engine.store().ingest_put(vec![Self::remember(&assessed, event_id, now)], vec![audit]).await?;
                if !outcome.duplicate {
                    metrics().derived.get_or_create(&KindLabels { kind: kind_name(*kind).into() }).inc();
                }
                receipt.outcome = pb::StateOutcome::Derived as i32;
                receipt.kind = kind_to_proto(*kind) as i32;
                receipt.event_id = event_id.clone();
                receipt.effective_at = format_time(Some(outcome.event.effective_at));
                receipt.receipt = Some(crate::api::receipt(&outcome.event, outcome.duplicate));
            }
        }
        Ok(receipt)
    }

    /// A batch: every record assessed first; refused as a whole when one
    /// derived event cannot be planned; held as a whole by the guard; else
    /// applied record by record (each safe to repeat).
    pub async fn submit_batch(&self, batch: Batch, initiator: &str) -> Result<pb::SubmitStatesResponse, EngineError> {
        let _batch = self.batch_lock.lock().await;
        self.run_batch(batch, initiator, false).await
    }

    async fn run_batch(
        &self,
        batch: Batch,
        initiator: &str,
        approved: bool,
    ) -> Result<pb::SubmitStatesResponse, EngineError> {
        let now = now_ms();
        let store = self.engine.store();
        let mut seen = HashSet::with_capacity(batch.records.len());
        for (index, record) in batch.records.iter().enumerate() {
            if record.source_system != batch.source_system {
                return Err(InvalidEvent {
                    field: format!("records[{index}].source_system"),
                    message: format!("differs from the batch's source system {:?}", batch.source_system),
                }
                .into());
            }
            if !seen.insert(record.person_id.as_str()) {
                return Err(InvalidEvent {
                    field: format!("records[{index}].person_id"),
                    message: format!(
                        "{:?} appears twice in the batch",
                        connector_kit::validate::printable(&record.person_id)
                    ),
                }
                .into());
            }
        }
        let bulk = batch.full_snapshot || batch.records.len() > 200;
        let known = if bulk { Some(Known::load(store.as_ref(), &batch.source_system).await?) } else { None };
        let mut assessed = Vec::with_capacity(batch.records.len());
        for record in &batch.records {
            assessed.push(match &known {
                Some(known) => {
                    let (stored, prior) = known.prior(&record.person_id);
                    assess(record.clone(), stored, prior, now)
                }
                None => self.assess_one(record.clone(), now).await?,
            });
        }
        if batch.full_snapshot
            && let Some(known) = &known
        {
            let named: HashSet<&str> = batch.records.iter().map(|r| r.person_id.as_str()).collect();
            for person in known.active() {
                if !named.contains(person.as_str()) {
                    let (stored, prior) = known.prior(&person);
                    let record = SourceRecord::missing_from_snapshot(&person, &batch.source_system);
                    assessed.push(assess(record, stored, prior, now));
                }
            }
        }
        let mut counts = pb::StateCounts::default();
        for item in &assessed {
            counts_add(&mut counts, &item.verdict);
        }
        // Every derived event must plan before anything is written.
        for item in &assessed {
            if let Some(event) = Self::derived_event(item) {
                self.engine.dry_run(&event).await.map_err(|error| match error {
                    EngineError::InvalidArgument(e) => EngineError::InvalidArgument(InvalidEvent {
                        field: format!(
                            "record {:?}: {}",
                            connector_kit::validate::printable(&item.record.person_id),
                            e.field
                        ),
                        message: e.message,
                    }),
                    other => other,
                })?;
            }
        }
        let listed = |item: &Assessed| {
            !matches!(item.verdict, Verdict::SameRecord | Verdict::Unchanged(_) | Verdict::Ignored(_))
        };
        if batch.dry_run {
            let receipts = assessed
                .iter()
                .filter(|i| listed(i))
                .map(|item| preview(item, pb::StateOutcome::WouldDerive))
                .collect();
            return Ok(pb::SubmitStatesResponse { counts: Some(counts), receipts, held: None });
        }
        if !approved {
            let max = self.engine.policy().file.source_of_truth.max_leavers.clone();
            if counts.leavers > 0 && max.is_some() {
                let population = match &known {
                    Some(known) => known.active().len() as u64,
                    None => Known::load(store.as_ref(), &batch.source_system).await?.active().len() as u64,
                };
                if let Some(limit) = guard::must_hold(max.as_ref(), counts.leavers, population) {
                    let held = self.hold(&batch, initiator, counts.leavers, population, limit, now).await?;
                    let receipts = assessed
                        .iter()
                        .filter(|i| listed(i))
                        .map(|item| preview(item, pb::StateOutcome::Held))
                        .collect();
                    return Ok(pb::SubmitStatesResponse {
                        counts: Some(counts),
                        receipts,
                        held: Some(held.to_proto()),
                    });
                }
            }
        }
        let mut receipts = Vec::new();
        let mut quiet = Vec::new();
        for item in assessed {
            match item.verdict {
                Verdict::Unchanged(_) => {
                    quiet.push(Self::remember(&item, "", now));
                    if quiet.len() >= 500 {
                        store.ingest_put(std::mem::take(&mut quiet), Vec::new()).await?;
                    }
                }
                Verdict::SameRecord | Verdict::Ignored(_) => {}
                _ => {
                    let _person = self.person_lock(&item.record.person_id).lock().await;
                    receipts.push(self.apply(item, initiator).await?);
                }
            }
        }
        if !quiet.is_empty() {
            store.ingest_put(quiet, Vec::new()).await?;
        }
        Ok(pb::SubmitStatesResponse { counts: Some(counts), receipts, held: None })
    }

    async fn hold(
        &self,
        batch: &Batch,
        submitter: &str,
        leavers: u64,
        population: u64,
        limit: u64,
        now: i64,
    ) -> Result<HeldBatchSummary, EngineError> {
        let max = self.engine.policy().file.source_of_truth.max_leavers.as_ref().map(guard::MaxLeavers::as_written);
        let records_text = encode(&batch.records);
        let summary = HeldBatchSummary {
            batch_id: format!("hb-{}", uuid::Uuid::now_v7().simple()),
            submitter: submitter.to_owned(),
            held_at: now,
            records: batch.records.len() as u64,
            leavers,
            population,
            limit: max.unwrap_or_default(),
            state: "held".into(),
            decided_by: String::new(),
            decided_at: None,
            comment: String::new(),
            full_snapshot: batch.full_snapshot,
            source_system: batch.source_system.clone(),
            label: batch.label.clone(),
            records_hash: records_hash(&records_text),
        };
        let audit = AuditEntry {
            at: now,
            principal: submitter.to_owned(),
            event_id: String::new(),
            action: "ingest.batch_held".into(),
            payload: json!({
                "batch_id": summary.batch_id,
                "records": summary.records,
                "leavers": leavers,
                "population": population,
                "limit": summary.limit,
                "allowed": limit,
                "full_snapshot": batch.full_snapshot,
                "source_system": batch.source_system,
                "label": batch.label,
                "records_hash": summary.records_hash,
            }),
        };
        let puts = vec![
            IngestPut {
                space: HELD_BATCH_RECORDS.into(),
                key: summary.batch_id.clone(),
                value: records_text,
                updated_at: now,
                expected: None,
            },
            IngestPut {
                space: HELD_BATCH.into(),
                key: summary.batch_id.clone(),
                value: encode(&summary),
                updated_at: now,
                expected: None,
            },
        ];
        self.engine.store().ingest_put(puts, vec![audit]).await?;
        tracing::warn!(batch_id = %summary.batch_id, leavers, population, limit, "batch of state submits held by the mass-change guard");
        self.refresh_held_gauge().await?;
        Ok(summary)
    }

    /// Held batches (with `all`, decided ones too), oldest first.
    pub async fn held_batches(&self, all: bool) -> Result<Vec<HeldBatchSummary>, EngineError> {
        let mut batches = Vec::new();
        let mut after = String::new();
        loop {
            let page = self.engine.store().ingest_after(HELD_BATCH, after.clone(), 1000).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            for (_, value) in page {
                let summary: HeldBatchSummary =
                    serde_json::from_str(&value).map_err(|e| corrupt("ingest_state.held_batch", &e))?;
                if all || summary.state == "held" {
                    batches.push(summary);
                }
            }
        }
        batches.sort_by(|a, b| (a.held_at, &a.batch_id).cmp(&(b.held_at, &b.batch_id)));
        Ok(batches)
    }

    async fn refresh_held_gauge(&self) -> Result<(), EngineError> {
        let held = self.held_batches(false).await?.len();
        metrics().held.set(i64::try_from(held).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Approves (applies, re-derived against what is known now, the guard
    /// not asked again) or rejects a held batch. The decider is never the
    /// submitter.
    pub async fn decide(
        &self,
        batch_id: &str,
        decider: &str,
        approve: bool,
        comment: &str,
    ) -> Result<(HeldBatchSummary, Option<pb::SubmitStatesResponse>), EngineError> {
        let _batch = self.batch_lock.lock().await;
        let store = self.engine.store();
        let text = store.ingest_get(HELD_BATCH, batch_id).await?.ok_or_else(|| {
            EngineError::NotFound(format!("held batch {:?}", connector_kit::validate::printable(batch_id)))
        })?;
        let summary: HeldBatchSummary =
            serde_json::from_str(&text).map_err(|e| corrupt("ingest_state.held_batch", &e))?;
        if summary.state != "held" {
            return Err(EngineError::FailedPrecondition(format!(
                "batch {batch_id} was already {} by {}",
                summary.state, summary.decided_by
            )));
        }
        if summary.submitter == decider {
            return Err(EngineError::PermissionDenied(format!(
                "{decider} submitted batch {batch_id} and may not decide on it"
            )));
        }
        let applied = if approve {
            let records_text = store
                .ingest_get(HELD_BATCH_RECORDS, batch_id)
                .await?
                .ok_or_else(|| EngineError::NotFound(format!("records of held batch {batch_id}")))?;
            if records_hash(&records_text) != summary.records_hash {
                return Err(EngineError::Store(StoreError::Corrupt {
                    what: "ingest_state.held_batch_records",
                    message: format!("the records of batch {batch_id} do not match the hash audited when it was held"),
                }));
            }
            let records: Vec<SourceRecord> =
                serde_json::from_str(&records_text).map_err(|e| corrupt("ingest_state.held_batch_records", &e))?;
            let batch = Batch {
                records,
                full_snapshot: summary.full_snapshot,
                dry_run: false,
                source_system: summary.source_system.clone(),
                label: summary.label.clone(),
            };
            Some(self.run_batch(batch, &summary.submitter, true).await?)
        } else {
            None
        };
        let now = now_ms();
        let decided = HeldBatchSummary {
            state: if approve { "approved" } else { "rejected" }.into(),
            decided_by: decider.to_owned(),
            decided_at: Some(now),
            comment: comment.to_owned(),
            ..summary
        };
        let counts = applied.as_ref().and_then(|a| a.counts);
        let audit = AuditEntry {
            at: now,
            principal: decider.to_owned(),
            event_id: String::new(),
            action: if approve { "ingest.batch_approved" } else { "ingest.batch_rejected" }.into(),
            payload: json!({
                "batch_id": batch_id,
                "submitter": decided.submitter,
                "leavers": decided.leavers,
                "comment": comment,
                "applied": counts.map(|c| json!({
                    "joiners": c.joiners, "movers": c.movers, "leavers": c.leavers, "rehires": c.rehires,
                    "unchanged": c.unchanged, "duplicates": c.duplicates, "stale": c.stale,
                })),
            }),
        };
        let put = IngestPut {
            space: HELD_BATCH.into(),
            key: batch_id.to_owned(),
            value: encode(&decided),
            updated_at: now,
            expected: Some(text),
        };
        store.ingest_put(vec![put], vec![audit]).await?;
        if decided.label == BURST_LABEL
            && let Ok(mut bursts) = self.bursts.lock()
        {
            // The burst was decided: its window starts again.
            bursts.remove(&decided.source_system);
        }
        self.refresh_held_gauge().await?;
        Ok((decided, applied))
    }
}

fn preview(item: &Assessed, outcome: pb::StateOutcome) -> pb::StateReceipt {
    let mut receipt = pb::StateReceipt {
        person_id: item.record.person_id.clone(),
        record_hash: item.hash.clone(),
        ..Default::default()
    };
    match &item.verdict {
        Verdict::Derived { kind, effective_at, event_id } => {
            receipt.outcome = outcome as i32;
            receipt.kind = kind_to_proto(*kind) as i32;
            receipt.event_id = event_id.clone();
            receipt.effective_at = format_time(*effective_at);
        }
        Verdict::Duplicate(event_id) => {
            receipt.outcome = pb::StateOutcome::Duplicate as i32;
            receipt.event_id = event_id.clone();
        }
        Verdict::Stale => {
            receipt.outcome = pb::StateOutcome::Stale as i32;
            receipt.reason = "older (changed_at) than the record last accepted for the person".into();
        }
        Verdict::SameRecord | Verdict::Unchanged(_) => receipt.outcome = pb::StateOutcome::Unchanged as i32,
        Verdict::Ignored(reason) => {
            receipt.outcome = pb::StateOutcome::Ignored as i32;
            receipt.reason = (*reason).into();
        }
    }
    receipt
}

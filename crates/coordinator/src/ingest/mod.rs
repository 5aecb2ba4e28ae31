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
//! - `held`: batches held by the guard, bursts of single leavers, decisions;
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
mod held;
pub mod rpc;
pub mod state;

pub use held::{BURST_LABEL, BURST_WINDOW_MS, HeldBatchSummary};

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
use state::{Derived, Digest32, Employment, Prior, SourceRecord, attributes_digest, parse_hash};

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
    /// The record's digest ([`SourceRecord::digest`]).
    digest: Digest32,
    /// The hash of the record it follows (none: the person was known only
    /// from events or a baseline, or not at all).
    prior_hash: Option<Digest32>,
    /// Whether the person was employed before (none: never known).
    prior_employment: Option<Employment>,
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

/// The stored hash of a stored record, as bytes; a hash that does not
/// parse is a corrupt store, never "no prior".
fn stored_digest(stored: &StoredRecord) -> Result<Digest32, EngineError> {
    parse_hash(&stored.record_hash).ok_or_else(|| {
        EngineError::Store(StoreError::Corrupt {
            what: "ingest_state.source_record",
            message: "record_hash is not 64 hex digits".into(),
        })
    })
}

/// What was known of a person: the last record accepted from the source,
/// unless an identity record was written after it (an event classified by
/// its sender, a baseline), which then says whether the person is active and
/// with which attributes.
fn prior_from(stored: Option<&StoredRecord>, identity: Option<&IdentityRecord>) -> Result<Option<Prior>, EngineError> {
    let record_hash = stored.map(stored_digest).transpose()?;
    let from_identity = |identity: &IdentityRecord| Prior {
        employment: if identity.has_left { Employment::Terminated } else { Employment::Active },
        attributes: attributes_digest(&identity.attributes),
        changed_at: stored.and_then(|s| s.record.changed_at),
        record_hash,
    };
    Ok(match (stored, identity) {
        (Some(stored), Some(identity)) if identity.updated_at > stored.accepted_at => Some(from_identity(identity)),
        (Some(stored), _) => Some(Prior {
            employment: stored.record.employment,
            attributes: attributes_digest(&stored.record.attributes),
            changed_at: stored.record.changed_at,
            record_hash,
        }),
        (None, Some(identity)) => Some(from_identity(identity)),
        (None, None) => None,
    })
}

/// The last record accepted for a person, as far as assessing needs it.
#[derive(Debug, Clone, Copy)]
struct Accepted<'a> {
    record_hash: Digest32,
    /// The event it derived (empty: none).
    event_id: &'a str,
}

fn assess(record: SourceRecord, stored: Option<Accepted<'_>>, prior: Option<&Prior>, now: i64) -> Assessed {
    let digest = record.digest();
    let verdict = match stored {
        Some(stored) if stored.record_hash == digest && !stored.event_id.is_empty() => {
            Verdict::Duplicate(stored.event_id.to_owned())
        }
        Some(stored) if stored.record_hash == digest => Verdict::SameRecord,
        _ if state::is_stale(&record, prior) => Verdict::Stale,
        _ => match state::derive(&record, prior, now) {
            Derived::Event { kind, effective_at } => {
                Verdict::Derived { kind, effective_at, event_id: state::event_id(&record, &hex::encode(digest), prior) }
            }
            Derived::Unchanged(reason) => Verdict::Unchanged(reason),
            Derived::Ignored(reason) => Verdict::Ignored(reason),
        },
    };
    Assessed {
        record,
        digest,
        prior_hash: prior.and_then(|p| p.record_hash),
        prior_employment: prior.map(|p| p.employment),
        verdict,
    }
}

/// What the store knows of one person, kept compact: digests of the record
/// and of the prior's attributes, not the stored record's and the identity
/// record's attribute maps (a roster of 100,000 is held beside them).
struct KnownPerson {
    /// The last record accepted from the source: its hash and the event it
    /// derived (empty: none).
    accepted: Option<(Digest32, String)>,
    /// When that record was accepted.
    accepted_at: i64,
    /// What was known of the person ([`prior_from`]).
    prior: Option<Prior>,
}

/// What the store knows of the persons of one source, loaded once for a
/// large batch (paged reads) instead of two reads per record.
#[derive(Default)]
struct Known {
    people: HashMap<String, KnownPerson>,
}

impl Known {
    /// Folds the stored records, then the identity records, page by page, to
    /// the same priors as [`prior_from`] without holding either whole.
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
                let digest = stored_digest(&stored)?;
                let prior = Prior {
                    employment: stored.record.employment,
                    attributes: attributes_digest(&stored.record.attributes),
                    changed_at: stored.record.changed_at,
                    record_hash: Some(digest),
                };
                known.people.insert(
                    person.to_owned(),
                    KnownPerson {
                        accepted: Some((digest, stored.event_id)),
                        accepted_at: stored.accepted_at,
                        prior: Some(prior),
                    },
                );
            }
        }
        let mut after = String::new();
        loop {
            let page = store.identities_after(after.clone(), PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.person_id.clone();
            for (identity, _) in page {
                let employment = if identity.has_left { Employment::Terminated } else { Employment::Active };
                match known.people.get_mut(&identity.person_id) {
                    // Written after the last record accepted: it says what the person is.
                    Some(person) if identity.updated_at > person.accepted_at => {
                        if let Some(prior) = person.prior.as_mut() {
                            prior.employment = employment;
                            prior.attributes = attributes_digest(&identity.attributes);
                        }
                    }
                    Some(_) => {}
                    None => {
                        let attributes = attributes_digest(&identity.attributes);
                        let prior = Prior { employment, attributes, changed_at: None, record_hash: None };
                        known.people.insert(
                            identity.person_id,
                            KnownPerson { accepted: None, accepted_at: 0, prior: Some(prior) },
                        );
                    }
                }
            }
        }
        Ok(known)
    }

    fn prior(&self, person: &str) -> (Option<Accepted<'_>>, Option<&Prior>) {
        match self.people.get(person) {
            None => (None, None),
            Some(known) => (
                known.accepted.as_ref().map(|(hash, event)| Accepted { record_hash: *hash, event_id: event }),
                known.prior.as_ref(),
            ),
        }
    }

    /// Persons known as active.
    fn active(&self) -> Vec<&str> {
        let mut active: Vec<&str> = self
            .people
            .iter()
            .filter(|(_, known)| known.prior.as_ref().is_some_and(|p| p.employment == Employment::Active))
            .map(|(person, _)| person.as_str())
            .collect();
        active.sort_unstable();
        active
    }
}

/// HR ingestion over an engine.
#[derive(Clone)]
pub struct Ingest {
    engine: Engine,
    /// Shared by every `Ingest` of the process (the gRPC API's and the SCIM
    /// endpoint's), so state submits for one person are serialised whichever
    /// door they came in by.
    person_locks: &'static [Mutex<()>],
    batch_lock: Arc<Mutex<()>>,
    /// Per source, when single state submits derived leavers within the
    /// last [`BURST_WINDOW_MS`] (held in memory: a restart forgets a burst).
    bursts: Arc<std::sync::Mutex<HashMap<String, std::collections::VecDeque<i64>>>>,
    /// Per source, the active population and when it was counted.
    population: Arc<std::sync::Mutex<HashMap<String, (u64, i64)>>>,
}

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
            // Never derived from a record yet (leave statuses are refused).
            EventKindName::Suspension | EventKindName::Return => counts.movers += 1,
        },
    }
}

impl Ingest {
    /// Ingestion over `engine`.
    pub fn new(engine: Engine) -> Self {
        static LOCKS: OnceLock<Vec<Mutex<()>>> = OnceLock::new();
        let person_locks = LOCKS.get_or_init(|| (0..PERSON_LOCKS).map(|_| Mutex::new(())).collect()).as_slice();
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
        let prior = prior_from(stored.as_ref(), identity.as_ref())?;
        let accepted = match &stored {
            Some(stored) => Some(Accepted { record_hash: stored_digest(stored)?, event_id: &stored.event_id }),
            None => None,
        };
        Ok(assess(record, accepted, prior.as_ref(), now))
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
            source_changed_at_ms: assessed.record.changed_at,
        })
    }

    fn remember(assessed: &Assessed, event_id: &str, now: i64) -> IngestPut {
        let stored = StoredRecord {
            record: assessed.record.clone(),
            record_hash: hex::encode(assessed.digest),
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
            record_hash: hex::encode(assessed.digest),
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
                receipt.receipt = first.map(Box::new);
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
                        "record_hash": hex::encode(assessed.digest),
                        "prior_record_hash": assessed.prior_hash.map(hex::encode),
                        "prior_employment": assessed.prior_employment,
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
                receipt.receipt = Some(Box::new(crate::api::receipt(&outcome.event, outcome.duplicate)));
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
        // Persons known as active and not named: they have left.
        let missing: Vec<String> = match &known {
            Some(known) if batch.full_snapshot => {
                known.active().into_iter().filter(|person| !seen.contains(person)).map(str::to_owned).collect()
            }
            _ => Vec::new(),
        };
        drop(seen);
        let Batch { records, full_snapshot, dry_run, source_system, label } = batch;
        let named = records.len();
        // The records move into their assessments (a roster is held once).
        let mut assessed = Vec::with_capacity(named + missing.len());
        for record in records {
            assessed.push(match &known {
                Some(known) => {
                    let (stored, prior) = known.prior(&record.person_id);
                    assess(record, stored, prior, now)
                }
                None => self.assess_one(record, now).await?,
            });
        }
        if let Some(known) = &known {
            for person in missing {
                let (stored, prior) = known.prior(&person);
                let record = SourceRecord::missing_from_snapshot(&person, &source_system);
                assessed.push(assess(record, stored, prior, now));
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
        if dry_run {
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
                    None => Known::load(store.as_ref(), &source_system).await?.active().len() as u64,
                };
                if let Some(limit) = guard::must_hold(max.as_ref(), counts.leavers, population) {
                    // The batch as it came (its records, without the leavers a snapshot implies).
                    let batch = Batch {
                        records: assessed.iter().take(named).map(|item| item.record.clone()).collect(),
                        full_snapshot,
                        dry_run,
                        source_system: source_system.clone(),
                        label: label.clone(),
                    };
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
                // Accepted before: its event id, without reading the event
                // (a roster sent again is mostly duplicates).
                Verdict::Duplicate(_) | Verdict::Stale => receipts.push(preview(&item, pb::StateOutcome::Duplicate)),
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
}

fn preview(item: &Assessed, outcome: pb::StateOutcome) -> pb::StateReceipt {
    let mut receipt = pb::StateReceipt {
        person_id: item.record.person_id.clone(),
        record_hash: hex::encode(item.digest),
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

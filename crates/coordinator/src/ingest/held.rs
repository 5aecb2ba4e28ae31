//! Batches held by the mass-change guard ([`super::guard`]): holding a
//! batch (its records stored apart, their hash audited), the burst of single
//! leaver submits, listing, and an admin's decision.

use jml_contract::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::state::SourceRecord;
use super::{Assessed, Batch, HELD_BATCH, HELD_BATCH_RECORDS, Ingest, Known, corrupt, encode, guard, metrics, preview};
use crate::engine::EngineError;
use crate::event::{format_time, now_ms};
use crate::store::{AuditEntry, IngestPut, StoreError};

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

/// A burst: single state submits deriving leavers within this window count
/// as one batch for the mass-change guard.
pub const BURST_WINDOW_MS: i64 = 60 * 60 * 1000;
/// How long a counted population serves the guard of single submits.
const POPULATION_TTL_MS: i64 = 60 * 1000;
/// The label of a batch the guard opened for a burst of single submits.
pub const BURST_LABEL: &str = "burst of single state submits";

impl Ingest {
    /// Counts a leaver of a single submit in its source's burst window;
    /// true when it would exceed `max_leavers` (then it is not counted: it
    /// is held).
    pub(super) async fn burst_exceeds(&self, source: &str, now: i64) -> Result<bool, EngineError> {
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
    pub(super) async fn hold_in_burst(
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

    pub(super) async fn hold(
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

    pub(super) async fn refresh_held_gauge(&self) -> Result<(), EngineError> {
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

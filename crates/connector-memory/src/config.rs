//! Configuration of the in-memory reference connector.

use std::path::Path;

use serde::Deserialize;

/// One entitlement that exists on the in-memory target.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CatalogueEntry {
    /// Entitlement kind: `group` or `role`.
    pub kind: String,
    /// Entitlement id.
    pub id: String,
    /// Whether holding it is privileged.
    #[serde(default)]
    pub privileged: bool,
}

/// The reference connector's configuration file (YAML).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// The target instance id reported in `Describe`.
    #[serde(default = "default_target_id")]
    pub target_id: String,
    /// The entitlements that exist on this target. Others are NOT_FOUND.
    #[serde(default = "default_catalogue")]
    pub entitlements: Vec<CatalogueEntry>,
}

fn default_target_id() -> String {
    "memory".into()
}

/// Entitlements present by default: enough for the conformance suite, the
/// example policy and the benchmarks.
pub fn default_catalogue() -> Vec<CatalogueEntry> {
    let groups = [
        "staff",
        "engineering",
        "sales",
        "finance",
        "marketing",
        "support",
        "hr",
        "legal",
        "contractors",
        "eu-staff",
        "us-staff",
        "managers",
        "vpn-users",
        "wiki-editors",
    ];
    let privileged_groups = ["admins", "it-ops", "prod-access", "db-admins"];
    let roles = ["viewer", "editor", "auditor"];
    let privileged_roles = ["owner", "break-glass"];
    let mut entries = Vec::new();
    for (list, kind, privileged) in [
        (&groups[..], "group", false),
        (&privileged_groups[..], "group", true),
        (&roles[..], "role", false),
        (&privileged_roles[..], "role", true),
    ] {
        entries.extend(list.iter().map(|id| CatalogueEntry { kind: kind.into(), id: (*id).into(), privileged }));
    }
    entries
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self { target_id: default_target_id(), entitlements: default_catalogue() }
    }
}

impl MemoryConfig {
    /// Reads and checks a YAML file; errors name the field.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        serde_yaml_ng::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

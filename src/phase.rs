//! The phase names a run is asked for, and the parsing of a phase list
//! (`migrate`, `preflight,schema`): the vocabulary the command line and
//! the phases share, kept below both so neither imports the other.

/// The phases, in the order `migrate` and the design list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Read-only: what each phase would do.
    Plan,
    /// The pre-migration checklist.
    Preflight,
    /// pg_dump of source and target.
    Backup,
    /// Migration files applied to the target.
    Schema,
    /// Rows copied source → target.
    Data,
    /// Storage buckets created and their objects copied (opt-in: `[storage]`).
    Storage,
    /// Edge Functions deployed.
    Functions,
    /// Edge Function secrets set.
    Secrets,
    /// Database-stored configuration set.
    Config,
    /// Source vs target compared.
    Validate,
    /// The gated switch-over.
    Cutover,
    /// HTTP checks.
    Smoke,
    /// The monitoring window after the switch.
    Monitor,
    /// The way back.
    Rollback,
}

impl Phase {
    /// Every phase, in design order.
    pub const ALL: [Phase; 14] = [
        Phase::Plan,
        Phase::Preflight,
        Phase::Backup,
        Phase::Schema,
        Phase::Data,
        Phase::Storage,
        Phase::Functions,
        Phase::Secrets,
        Phase::Config,
        Phase::Validate,
        Phase::Cutover,
        Phase::Smoke,
        Phase::Monitor,
        Phase::Rollback,
    ];

    /// What `migrate` expands to. [`Phase::Storage`] is opt-in: a run drops
    /// it again when the manifest has no `[storage]` section and the phase
    /// list did not name `storage` itself (see [`drop_unconfigured`]).
    pub const MIGRATE: [Phase; 9] = [
        Phase::Preflight,
        Phase::Backup,
        Phase::Schema,
        Phase::Data,
        Phase::Storage,
        Phase::Functions,
        Phase::Secrets,
        Phase::Config,
        Phase::Validate,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Plan => "plan",
            Phase::Preflight => "preflight",
            Phase::Backup => "backup",
            Phase::Schema => "schema",
            Phase::Data => "data",
            Phase::Storage => "storage",
            Phase::Functions => "functions",
            Phase::Secrets => "secrets",
            Phase::Config => "config",
            Phase::Validate => "validate",
            Phase::Cutover => "cutover",
            Phase::Smoke => "smoke",
            Phase::Monitor => "monitor",
            Phase::Rollback => "rollback",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses `plan`, `preflight,schema`, `migrate`, ... into phases in the order
/// given, each once. An unknown name suggests the nearest known one.
pub fn parse_phase_list(text: &str) -> Result<Vec<Phase>, String> {
    let mut phases = Vec::new();
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let word_lower = word.to_ascii_lowercase();
        let expanded: Vec<Phase> = if word_lower == "migrate" {
            Phase::MIGRATE.to_vec()
        } else if let Some(p) = Phase::ALL.iter().find(|p| p.name() == word_lower) {
            vec![*p]
        } else {
            let names = Phase::ALL.iter().map(|p| p.name()).chain(["migrate"]);
            let nearest = names
                .map(|n| (strsim::damerau_levenshtein(&word_lower, n), n))
                .min()
                .filter(|(d, _)| *d <= 3)
                .map(|(_, n)| format!("; did you mean `{n}`?"))
                .unwrap_or_default();
            return Err(format!(
                "unknown phase `{word}`{nearest} Phases: {}, or migrate",
                Phase::ALL.map(|p| p.name()).join(", ")
            ));
        };
        for phase in expanded {
            if !phases.contains(&phase) {
                phases.push(phase);
            }
        }
    }
    if phases.is_empty() {
        return Err("no phase given; use e.g. `plan` or `preflight,schema`".into());
    }
    Ok(phases)
}

/// Removes the opt-in phases `migrate` brought in but the manifest does not
/// configure: [`Phase::Storage`] without a `[storage]` section, unless the
/// list (`phases_text`) names `storage` itself (then the phase runs and says
/// what is missing).
pub fn drop_unconfigured(phases: &mut Vec<Phase>, phases_text: &str, storage_configured: bool) {
    let named = |p: Phase| {
        phases_text
            .split(',')
            .any(|w| w.trim().eq_ignore_ascii_case(p.name()))
    };
    if !storage_configured && !named(Phase::Storage) {
        phases.retain(|p| *p != Phase::Storage);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_lists() {
        assert_eq!(parse_phase_list("plan").unwrap(), vec![Phase::Plan]);
        assert_eq!(
            parse_phase_list(" Preflight , schema,preflight").unwrap(),
            vec![Phase::Preflight, Phase::Schema]
        );
        assert_eq!(
            parse_phase_list("migrate").unwrap(),
            Phase::MIGRATE.to_vec()
        );
        assert_eq!(parse_phase_list("plan,migrate").unwrap().len(), 10);
    }

    #[test]
    fn storage_is_part_of_migrate_only_when_configured() {
        let mut phases = parse_phase_list("migrate").unwrap();
        drop_unconfigured(&mut phases, "migrate", false);
        assert!(!phases.contains(&Phase::Storage));
        assert_eq!(phases.len(), 8);
        let mut phases = parse_phase_list("migrate").unwrap();
        drop_unconfigured(&mut phases, "migrate", true);
        assert_eq!(phases[4], Phase::Storage);
        let mut phases = parse_phase_list("Storage").unwrap();
        drop_unconfigured(&mut phases, "Storage", false);
        assert_eq!(
            phases,
            vec![Phase::Storage],
            "named: runs and says what is missing"
        );
    }

    #[test]
    fn unknown_phase_suggests() {
        let err = parse_phase_list("vaildate").unwrap_err();
        assert!(err.contains("did you mean `validate`?"), "{err}");
        let err = parse_phase_list("xyzzyfoo").unwrap_err();
        assert!(!err.contains("did you mean"), "{err}");
        assert!(parse_phase_list(" , ").is_err());
    }
}

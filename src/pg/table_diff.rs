//! Source vs target, table by table: exact row counts and content
//! checksums, computed in each database (no row travels). Used by
//! `validate`, by `cutover`'s check that a frozen source still equals the
//! copy, and at a replication fence.

use std::collections::BTreeMap;

use super::{Database, PgError};
use crate::manifest::QualifiedName;

/// One table compared.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableComparison {
    /// The table.
    pub table: QualifiedName,
    /// Exact row count on the source.
    pub source_rows: i64,
    /// Exact row count on the target; `None` when the table is missing there.
    pub target_rows: Option<i64>,
    /// Content checksum on the source, when compared.
    pub source_checksum: Option<String>,
    /// Content checksum on the target, when compared.
    pub target_checksum: Option<String>,
}

impl TableComparison {
    /// The target has the table with as many rows.
    pub fn counts_equal(&self) -> bool {
        self.target_rows == Some(self.source_rows)
    }

    /// The checksums agree, or were not compared.
    pub fn content_equal(&self) -> bool {
        self.source_checksum == self.target_checksum
    }

    /// Counts and content agree.
    pub fn equal(&self) -> bool {
        self.counts_equal() && self.content_equal()
    }

    /// Target rows minus source rows, when the target has the table.
    pub fn delta(&self) -> Option<i64> {
        self.target_rows.map(|t| t - self.source_rows)
    }
}

/// Compares `tables` on both sides, both at once: with `checksums`, each
/// table's row count and content checksum (over the source's columns) in one
/// scan per side; without, exact counts (each side in one snapshot). A table missing on the target
/// has `target_rows = None` and no checksums.
pub async fn compare_tables(
    source: &Database,
    target: &Database,
    tables: &[QualifiedName],
    checksums: bool,
) -> Result<Vec<TableComparison>, PgError> {
    let present: Vec<QualifiedName> = target.existing_tables(tables).await?;
    if !checksums {
        let (source_counts, target_counts) = tokio::join!(
            source.exact_row_counts(tables),
            target.exact_row_counts(&present)
        );
        let (source_counts, target_counts): (BTreeMap<_, _>, BTreeMap<_, _>) =
            (source_counts?, target_counts?);
        return Ok(tables
            .iter()
            .map(|table| TableComparison {
                table: table.clone(),
                source_rows: source_counts.get(table).copied().unwrap_or(0),
                target_rows: target_counts.get(table).copied(),
                source_checksum: None,
                target_checksum: None,
            })
            .collect());
    }
    // With checksums, each side's checksum query counts the rows in the same
    // scan: one pass per table and side, not two.
    let mut out = Vec::with_capacity(tables.len());
    for table in tables {
        if !present.contains(table) {
            let counts = source.exact_row_counts(std::slice::from_ref(table)).await?;
            out.push(TableComparison {
                table: table.clone(),
                source_rows: counts.get(table).copied().unwrap_or(0),
                target_rows: None,
                source_checksum: None,
                target_checksum: None,
            });
            continue;
        }
        let columns = source.column_names(table).await?;
        // One expression for both sides, from the column types and the
        // lower server version.
        let hash = super::compare::row_hash(source, target, table, &columns).await?;
        let (a, b) = tokio::join!(
            source.table_checksum(table, &hash),
            target.table_checksum(table, &hash)
        );
        let ((source_rows, source_sum), (target_rows, target_sum)) = (a?, b?);
        out.push(TableComparison {
            table: table.clone(),
            source_rows,
            target_rows: Some(target_rows),
            source_checksum: Some(source_sum),
            target_checksum: Some(target_sum),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(src: i64, tgt: Option<i64>, a: Option<&str>, b: Option<&str>) -> TableComparison {
        TableComparison {
            table: QualifiedName::parse("public.t").unwrap(),
            source_rows: src,
            target_rows: tgt,
            source_checksum: a.map(str::to_string),
            target_checksum: b.map(str::to_string),
        }
    }

    #[test]
    fn equality_needs_counts_and_content() {
        assert!(cmp(3, Some(3), Some("1"), Some("1")).equal());
        assert!(cmp(3, Some(3), None, None).equal());
        assert!(!cmp(3, Some(3), Some("1"), Some("2")).equal());
        assert!(!cmp(3, Some(4), Some("1"), Some("1")).equal());
        assert!(!cmp(3, None, None, None).equal());
        assert_eq!(cmp(3, Some(5), None, None).delta(), Some(2));
        assert_eq!(cmp(3, None, None, None).delta(), None);
    }
}

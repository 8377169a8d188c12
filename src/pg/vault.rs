//! Supabase Vault (`vault.secrets`, decrypted through the
//! `vault.decrypted_secrets` view): what a database copy cannot carry.
//!
//! Vault encrypts each secret with the project's root key, with the row's
//! id, description and timestamps as associated data, so a row copied to a
//! project with another root key no longer decrypts. Values never leave the
//! database through these functions except as sha-256 digests, computed by
//! the server.

use sqlx::Row;

use super::{Database, PgError};

/// One Vault secret as cutover sees it: never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultSecret {
    /// Row id (part of what is encrypted, so rows keep it when copied).
    pub id: String,
    /// Its name (`None` for an unnamed secret).
    pub name: Option<String>,
    /// Whether it decrypts with this database's root key.
    pub decrypts: bool,
    /// Hex sha-256 of the decrypted value, computed by the server; `None`
    /// when it does not decrypt.
    pub value_sha256: Option<String>,
}

impl VaultSecret {
    /// The name, or the id for an unnamed secret.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("(unnamed {})", self.id))
    }
}

impl Database {
    /// Whether this database has Vault (`vault.secrets` and the
    /// `vault.decrypted_secrets` view).
    pub async fn has_vault(&self) -> Result<bool, PgError> {
        sqlx::query_scalar(
            "select to_regclass('vault.secrets') is not null
                and to_regclass('vault.decrypted_secrets') is not null",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.error("looking for Vault", e))
    }

    /// Every Vault secret, with whether it decrypts here and its value's
    /// digest; empty without Vault. A row the key cannot decrypt reads as
    /// not decrypting, whether the view answers null or an error.
    pub async fn vault_secrets(&self) -> Result<Vec<VaultSecret>, PgError> {
        if !self.has_vault().await? {
            return Ok(Vec::new());
        }
        let ids: Vec<(String, Option<String>)> =
            sqlx::query("select id::text, name from vault.secrets order by name, id")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.error("listing Vault secrets", e))?
                .into_iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
        let mut out = Vec::with_capacity(ids.len());
        for (id, name) in ids {
            // One row at a time: a row that fails to decrypt must not hide
            // the others.
            let digest: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(
                "select encode(sha256(convert_to(decrypted_secret, 'utf8')), 'hex')
                   from vault.decrypted_secrets where id = $1::uuid",
            )
            .bind(&id)
            .fetch_optional(&self.pool)
            .await
            .map(Option::flatten);
            let value_sha256 = digest.ok().flatten();
            out.push(VaultSecret {
                id,
                name,
                decrypts: value_sha256.is_some(),
                value_sha256,
            });
        }
        Ok(out)
    }

    /// Copies the source's `vault.secrets` rows verbatim (id, name,
    /// description, ciphertext, key id, nonce, timestamps), replacing rows
    /// with the same id or name: they decrypt here once this project has the
    /// source's root key. Returns how many rows were written.
    pub async fn copy_vault_rows(&self, source: &Database) -> Result<u64, PgError> {
        let rows: Vec<serde_json::Value> =
            sqlx::query_scalar("select to_jsonb(s) from vault.secrets s")
                .fetch_all(&source.pool)
                .await
                .map_err(|e| source.error("reading Vault rows", e))?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.error("copying Vault rows", e))?;
        let mut written = 0;
        for row in rows {
            // Same name, other id: the target's own secret of that name
            // gives way to the source's.
            sqlx::query(
                "delete from vault.secrets
                  where (name = $1->>'name' and id <> ($1->>'id')::uuid)",
            )
            .bind(&row)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error("copying Vault rows", e))?;
            written += sqlx::query(
                "insert into vault.secrets
                 select * from jsonb_populate_record(null::vault.secrets, $1)
                 on conflict (id) do update set
                   name = excluded.name, description = excluded.description,
                   secret = excluded.secret, key_id = excluded.key_id,
                   nonce = excluded.nonce, created_at = excluded.created_at,
                   updated_at = excluded.updated_at",
            )
            .bind(&row)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error("copying Vault rows", e))?
            .rows_affected();
        }
        tx.commit()
            .await
            .map_err(|e| self.error("copying Vault rows", e))?;
        Ok(written)
    }

    /// Creates the named secret with `value` (`vault.create_secret`), or
    /// gives an existing one of that name the value (`vault.update_secret`),
    /// encrypted with this project's root key. Returns whether it existed.
    pub async fn put_vault_secret(&self, name: &str, value: &str) -> Result<bool, PgError> {
        let existing: Option<String> =
            sqlx::query_scalar("select id::text from vault.secrets where name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.error(format!("looking up Vault secret {name}"), e))?;
        match &existing {
            Some(id) => sqlx::query("select vault.update_secret($1::uuid, $2)")
                .bind(id)
                .bind(value)
                .execute(&self.pool)
                .await
                .map(drop),
            None => sqlx::query("select vault.create_secret($1, $2)")
                .bind(value)
                .bind(name)
                .execute(&self.pool)
                .await
                .map(drop),
        }
        .map_err(|e| self.error(format!("setting Vault secret {name}"), e))?;
        Ok(existing.is_some())
    }
}

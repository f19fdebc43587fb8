//! Issuer mode: replaced keys listed for revocation after the grace period, tied to `C`
//! before they are revoked.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use vault_ops_core::api::kv2::{KvSecret, MetadataUpdate};

use super::{field_str, min_time, shown_id, ApiKeyRotator, KeyIssuer, RevokeRequest};
use crate::protocol::Run;
use crate::state::vault_time;
use crate::RotationError;

/// The most keys a revocation list may hold; a longer list is a conflict (nothing revoked).
pub const MAX_RETIRED_KEYS: usize = 64;

/// A replaced key waiting for revocation (issuer mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetiredKey {
    /// The provider's key id.
    pub key_id: String,
    /// When it was replaced (Vault's `created_time` of the new version, RFC 3339).
    pub retired_at: String,
    /// When it may be revoked (RFC 3339, Vault's clock).
    pub revoke_after: String,
    /// A revocation in progress: who, and since when (RFC 3339, Vault's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoking: Option<(String, String)>,
    /// The version of `C` that replaced the key (its previous version held it): what ties the
    /// entry to `C` before the key is revoked. An entry without it is never revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_in: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Revocations {
    #[serde(default)]
    pub(super) keys: Vec<RetiredKey>,
}

impl ApiKeyRotator {
    pub(super) async fn load_revocations(
        &self,
        path: &str,
    ) -> Result<(u64, Revocations), RotationError> {
        let kv = self.client.kv2(&self.options.mount);
        let rpath = self.revocations_path(path);
        match kv.get_opt::<Revocations>(&rpath).await {
            Ok(Some(s)) => Ok((s.metadata.version, s.data)),
            Ok(None) => Ok((0, Revocations::default())),
            Err(vault_ops_core::Error::SecretVersionDeleted { version, .. }) => {
                Ok((version, Revocations::default()))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn save_revocations(
        &self,
        path: &str,
        list: &Revocations,
        cas: u64,
    ) -> Result<(), vault_ops_core::Error> {
        let kv = self.client.kv2(&self.options.mount);
        let rpath = self.revocations_path(path);
        if cas == 0 {
            kv.write_metadata(
                &rpath,
                &MetadataUpdate::new().cas_required(true).max_versions(10),
            )
            .await?;
        }
        kv.put_cas(&rpath, list, cas).await.map(|_| ())
    }

    /// Adds `key_id`, replaced by version `replaced_in` of `C` written at `retired_at`, to the
    /// revocation list (idempotent), due `grace_period` after `retired_at`.
    pub(super) async fn retire(
        &self,
        path: &str,
        key_id: &str,
        replaced_in: u64,
        retired_at: &str,
    ) -> Result<(), RotationError> {
        let revoke_after = vault_time::parse_rfc3339(retired_at)
            .map(|t| vault_time::format_rfc3339(vault_time::later(t, self.options.grace_period)))
            .ok_or_else(|| {
                RotationError::Config(format!(
                    "Vault's created_time {retired_at:?} is not RFC 3339"
                ))
            })?;
        for _ in 0..5 {
            let (version, mut list) = self.load_revocations(path).await?;
            if list.keys.iter().any(|k| k.key_id == key_id) {
                return Ok(());
            }
            list.keys.push(RetiredKey {
                key_id: key_id.to_string(),
                retired_at: retired_at.to_string(),
                revoke_after: revoke_after.clone(),
                revoking: None,
                replaced_in: Some(replaced_in),
            });
            match self.save_revocations(path, &list, version).await {
                Ok(()) => {
                    tracing::info!(key_id, revoke_after = %revoke_after, "replaced key listed for revocation");
                    return Ok(());
                }
                Err(e) if e.is_cas_mismatch() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RotationError::Vault(vault_ops_core::Error::InvalidInput(
            "the revocation list kept changing; giving up for now".into(),
        )))
    }

    /// Ties a key listed for revocation to `C`: version `replaced_in - 1` held it, version
    /// `replaced_in` (written at `retired_at`) replaced it, and the latest version
    /// (`current_key_id`) does not hold it. Returns when it may be revoked (Vault's
    /// `created_time` of `replaced_in` plus the grace period); an entry that cannot be tied is
    /// an [`RotationError::Conflict`].
    pub(super) async fn check_retired(
        &self,
        run: &mut Run,
        path: &str,
        entry: &RetiredKey,
        current_key_id: Option<&str>,
    ) -> Result<SystemTime, RotationError> {
        let conflict = |why: String| {
            RotationError::Conflict {
            name: path.to_string(),
            reason: format!(
                "the revocation list names key id {}, which {why}; nothing was revoked (fix {} after checking it)",
                shown_id(&entry.key_id),
                self.revocations_path(path)
            ),
        }
        };
        let Some(replaced_in) = entry.replaced_in.filter(|v| *v >= 2) else {
            return Err(conflict(
                "is not tied to the version of the credential that replaced it".into(),
            ));
        };
        if current_key_id == Some(entry.key_id.as_str()) {
            return Err(conflict("is the key in the credential now".into()));
        }
        let key_id = |c: &KvSecret<Map<String, Value>>| {
            field_str(&c.data, &self.options.key_id_field).map(str::to_string)
        };
        let held = run
            .timed("check", self.read_version(path, replaced_in - 1))
            .await?;
        if held.as_ref().and_then(key_id).as_deref() != Some(entry.key_id.as_str()) {
            return Err(conflict(format!(
                "version {} of the credential does not hold",
                replaced_in - 1
            )));
        }
        let replacing = run
            .timed("check", self.read_version(path, replaced_in))
            .await?;
        let Some(replacing) = replacing else {
            return Err(conflict(format!(
                "was replaced by version {replaced_in} of the credential, which is not readable"
            )));
        };
        if key_id(&replacing).as_deref() == Some(entry.key_id.as_str()) {
            return Err(conflict(format!(
                "version {replaced_in} of the credential still holds"
            )));
        }
        let written = vault_time::parse_rfc3339(&replacing.metadata.created_time);
        let Some(written) = written else {
            return Err(RotationError::Vault(vault_ops_core::Error::InvalidInput(
                format!("Vault's created_time of version {replaced_in} of {path} is not RFC 3339"),
            )));
        };
        if vault_time::parse_rfc3339(&entry.retired_at) != Some(written) {
            return Err(conflict(format!(
                "was not replaced when version {replaced_in} of the credential was written"
            )));
        }
        Ok(vault_time::later(written, self.options.grace_period))
    }

    /// Revokes the keys whose grace period has passed at `now` (Vault's clock when `S` was
    /// read); run after the rotation, whatever its outcome. Returns the
    /// earliest revocation still ahead.
    ///
    /// The list is part of `S`, so it is input, not truth: a key is revoked only when it is
    /// due and [`check_retired`](Self::check_retired) ties it to `C`. A list naming a key that
    /// cannot be tied (or longer than [`MAX_RETIRED_KEYS`]) is a conflict, and nothing is
    /// revoked in that run.
    pub(super) async fn revoke_due(
        &self,
        run: &mut Run,
        name: &str,
        path: &str,
        now: SystemTime,
        issuer: &dyn KeyIssuer,
    ) -> Result<Option<SystemTime>, RotationError> {
        let (mut version, mut list) = run
            .timed("revocations", self.load_revocations(path))
            .await?;
        if list.keys.len() > MAX_RETIRED_KEYS {
            return Err(RotationError::Conflict {
                name: path.to_string(),
                reason: format!(
                    "the revocation list holds {} keys, more than {MAX_RETIRED_KEYS}; nothing was revoked",
                    list.keys.len()
                ),
            });
        }
        let lease = self.options.lease;
        let mut next: Option<SystemTime> = None;
        let mut current_key_id: Option<Option<String>> = None;
        let mut due = Vec::new();
        for entry in &list.keys {
            // The recorded time only says when to look (unreadable: look now); `C` decides.
            let listed = vault_time::parse_rfc3339(&entry.revoke_after);
            if let Some(after) = listed.filter(|after| now < *after) {
                next = min_time(next, Some(after));
                continue;
            }
            if current_key_id.is_none() {
                let kv = self.client.kv2(&self.options.mount);
                let current = run
                    .timed("check", kv.get_opt::<Map<String, Value>>(path))
                    .await?;
                current_key_id = Some(current.and_then(|c| {
                    field_str(&c.data, &self.options.key_id_field).map(str::to_string)
                }));
            }
            let current = current_key_id.as_ref().and_then(|c| c.as_deref());
            let after = self.check_retired(run, path, entry, current).await?;
            let after = listed.map_or(after, |listed| listed.max(after));
            if now < after {
                next = min_time(next, Some(after));
                continue;
            }
            due.push(entry.key_id.clone());
        }
        for id in due {
            let Some(entry) = list.keys.iter_mut().find(|k| k.key_id == id) else {
                continue;
            };
            if let Some((owner, since)) = &entry.revoking {
                // A marker from the future counts from now: it holds for one lease at most.
                if let Some(since) = vault_time::parse_rfc3339(since) {
                    let until = vault_time::later(since.min(now), lease);
                    if now < until && owner != &self.options.owner {
                        next = min_time(next, Some(until));
                        continue;
                    }
                }
            }
            // Mark it in progress (fenced by CAS), revoke, then remove it.
            entry.revoking = Some((self.options.owner.clone(), vault_time::format_rfc3339(now)));
            match run
                .timed("revoke_mark", self.save_revocations(path, &list, version))
                .await
            {
                Ok(()) => version = version.saturating_add(1),
                Err(e) if e.is_cas_mismatch() => return Ok(next),
                Err(e) => return Err(e.into()),
            }
            let request = RevokeRequest {
                name: name.to_string(),
                path: path.to_string(),
                key_id: id.clone(),
            };
            run.timed("revoke", issuer.revoke(&request))
                .await
                .map_err(|source| RotationError::KeyIssuer {
                    name: name.to_string(),
                    source,
                })?;
            tracing::info!(key_id = %id, "replaced key revoked");
            list.keys.retain(|k| k.key_id != id);
            match run
                .timed("revoke_done", self.save_revocations(path, &list, version))
                .await
            {
                Ok(()) => version = version.saturating_add(1),
                Err(e) if e.is_cas_mismatch() => return Ok(next),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(next)
    }
}

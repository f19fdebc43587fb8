# vault-ops-backup: `vault-ops backup` takes a raft snapshot. Nothing else: no restore (that is
# an update on the same path, and a person's decision), no secrets, no sys/ configuration.
path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}

# vault-ops-scheduler: `vault-ops scheduler run` with deploy/kubernetes/scheduler-config.yaml.
# API keys at secret/api-keys/<name> (KV v2) and the rotation state records at
# secret/rotation-state/...; no delete, no destroy, nothing outside these two prefixes.
# `list` on the state records' metadata lets a starting scheduler learn which secrets were
# never rotated with one LIST instead of a read per secret.
path "secret/data/api-keys/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/api-keys/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/data/rotation-state/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/rotation-state/*" {
  capabilities = ["create", "read", "update", "list"]
}

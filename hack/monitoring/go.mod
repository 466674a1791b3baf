// The Prometheus Operator's CRDs for the tests (SPEC §12), at this version: go.sum checks the
// module's download; bandsy_dev.monitoring_crds takes the CRDs from its example/ directory.
module bandsy.app/hack/monitoring

go 1.24

require github.com/prometheus-operator/prometheus-operator v0.85.0

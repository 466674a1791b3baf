// Exposure on the real node (SPEC §12): the Gateway API CRDs (standard channel), Traefik, which
// serves Gateway API and Ingress, and cert-manager's CRDs, at these versions. go.sum checks each
// module's download from the Go module proxy; hack/gateway/build.sh builds Traefik inside its own
// module directory (its replace directives apply there), bandsy_dev.gateway_crds takes the CRDs.
module bandsy.app/hack/gateway

go 1.24

require (
	github.com/cert-manager/cert-manager v1.21.2
	github.com/traefik/traefik/v3 v3.6.12
	sigs.k8s.io/gateway-api v1.6.3
)

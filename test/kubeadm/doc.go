// Package kubeadm checks the kubeadm JoinConfiguration that Rackstrap's
// cloud-init (cluster/kubernetes) renders against kubeadm's own API types,
// k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta3 and v1beta4,
// decoded strictly the way 'kubeadm join --config' decodes them.
//
// It is a module of its own: k8s.io/kubernetes cannot be required by the
// main module (its go.mod requires every staging module k8s.io/* at
// v0.0.0 and replaces them with local directories), so this module pins
// each staging module to the release matching the kubernetes tag with
// replace directives. Rackstrap's main module does not import it; the
// test TestKubeadmAPITypes in cluster/kubernetes runs 'go test' here on
// configurations it has just rendered (RACKSTRAP_KUBEADM_CASES). Run alone
// (cd test/kubeadm && go test ./...), it reads the golden cases committed
// in cluster/kubernetes/testdata/kubeadm.
//
// kubernetes v1.36 is the last release that carries both v1beta3 and
// v1beta4 (v1.37 dropped v1beta3 and added v1); see
// docs/decisions/0017-nocloud-seed.md.
package kubeadm

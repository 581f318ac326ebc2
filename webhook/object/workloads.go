package object

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "sigs.k8s.io/json"
)

// workloads are the k8s.io/api types of the workload kinds the rule pack
// reads (config.WorkloadKinds).
var workloads = map[schema.GroupKind]func() any{
	{Group: "", Kind: "Pod"}:             func() any { return &corev1.Pod{} },
	{Group: "apps", Kind: "Deployment"}:  func() any { return &appsv1.Deployment{} },
	{Group: "apps", Kind: "StatefulSet"}: func() any { return &appsv1.StatefulSet{} },
	{Group: "apps", Kind: "DaemonSet"}:   func() any { return &appsv1.DaemonSet{} },
	{Group: "apps", Kind: "ReplicaSet"}:  func() any { return &appsv1.ReplicaSet{} },
	{Group: "batch", Kind: "Job"}:        func() any { return &batchv1.Job{} },
	{Group: "batch", Kind: "CronJob"}:    func() any { return &batchv1.CronJob{} },
}

// Check reports whether raw decodes into the type of group/kind: an Istio
// kind as Decode does; a workload kind, in strict mode, into its k8s.io/api
// type, rejecting unknown and duplicate fields. A workload in a request is
// not decoded again: the API server has decoded it into that type before
// admission (unlike an Istio object, whose CRD leaves the spec unchecked).
// Other kinds reach the policies as their JSON and are not checked.
func Check(group, kind string, raw []byte, strict bool) error {
	if Typed(group, kind) {
		_, err := Decode(kind, raw, strict)
		return err
	}
	if newWorkload, ok := workloads[schema.GroupKind{Group: group, Kind: kind}]; ok && strict {
		return checkWorkload(raw, newWorkload())
	}
	return nil
}

// checkWorkload decodes raw into obj strictly, as the API server would,
// and names the field of the first error where the decoder tells it.
func checkWorkload(raw []byte, obj any) error {
	strictErrs, err := kjson.UnmarshalStrict(raw, obj)
	if err != nil {
		return workloadError(err)
	}
	if len(strictErrs) > 0 {
		return workloadError(strictErrs[0])
	}
	return nil
}

var (
	typeErrorAt   = regexp.MustCompile(`^json: cannot unmarshal (\S+) into Go struct field [^.]+\.(\S+) of type (\S+)$`)
	strictErrorAt = regexp.MustCompile(`^(unknown|duplicate) field "([^"]+)"$`)
)

// workloadError places a decoding error at its field: the decoder names
// the path without array indexes (spec.containers.securityContext.runAsUser),
// as the API server's own message does.
func workloadError(err error) error {
	msg := err.Error()
	if m := typeErrorAt.FindStringSubmatch(msg); m != nil {
		return &FieldError{Field: m[2], Detail: fmt.Sprintf("expected %s, got %s", m[3], m[1])}
	}
	var fe kjson.FieldError
	if errors.As(err, &fe) {
		if m := strictErrorAt.FindStringSubmatch(msg); m != nil {
			return &FieldError{Field: fe.FieldPath(), Detail: m[1] + " field"}
		}
	}
	if ok, _ := kjson.SyntaxErrorOffset(err); ok || strings.Contains(msg, "unexpected end of JSON input") {
		return fmt.Errorf("not a valid object: %s", strings.TrimPrefix(msg, "json: "))
	}
	return errors.New(strings.TrimPrefix(msg, "json: "))
}

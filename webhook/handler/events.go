package handler

import (
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/egress-guard/egress-guard/webhook/engine"
)

// event records a Kubernetes Event on the object of req, unless there is no
// recorder or the request is an API-server dry run (which must have no side
// effects).
func (d *Deps) event(req admission.Request, in engine.Request, reason, message string) {
	if d.Recorder == nil || in.DryRun {
		return
	}
	obj := &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{
			APIVersion: schema.GroupVersion{Group: req.Kind.Group, Version: req.Kind.Version}.String(),
			Kind:       req.Kind.Kind,
		},
		ObjectMeta: metav1.ObjectMeta{Namespace: in.Namespace, Name: in.Name, UID: objectUID(req)},
	}
	d.Recorder.Event(obj, corev1.EventTypeWarning, reason, message)
}

// objectUID is the uid of the object under review: none yet on CREATE.
func objectUID(req admission.Request) types.UID {
	var meta struct {
		Metadata struct {
			UID types.UID `json:"uid"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(req.Object.Raw, &meta)
	return meta.Metadata.UID
}

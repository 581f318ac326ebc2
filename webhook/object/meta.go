package object

import (
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func objectMeta(obj client.Object) *metav1.ObjectMeta {
	switch o := obj.(type) {
	case *networkingv1.ServiceEntry:
		return &o.ObjectMeta
	case *networkingv1.VirtualService:
		return &o.ObjectMeta
	case *networkingv1.DestinationRule:
		return &o.ObjectMeta
	case *networkingv1.Sidecar:
		return &o.ObjectMeta
	}
	return nil
}

func gvk(apiVersion, kind string) schema.GroupVersionKind {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return schema.GroupVersionKind{Kind: kind}
	}
	return gv.WithKind(kind)
}

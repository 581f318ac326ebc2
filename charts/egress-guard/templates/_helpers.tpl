{{/* vim: set filetype=mustache: */}}

{{/* The chart name, at most 63 characters. */}}
{{- define "egress-guard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The full name of the release's objects. Truncated to 50 characters so that
the longest suffix added below ("-selfsigned", "-metrics") still fits in 63.
*/}}
{{- define "egress-guard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "egress-guard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "egress-guard.labels" -}}
helm.sh/chart: {{ include "egress-guard.chart" . }}
{{ include "egress-guard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels that select the webhook pods. */}}
{{- define "egress-guard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "egress-guard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "egress-guard.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Names of the objects that other objects refer to. */}}
{{- define "egress-guard.serviceName" -}}{{ include "egress-guard.fullname" . }}{{- end -}}
{{- define "egress-guard.configMapName" -}}{{ include "egress-guard.fullname" . }}-config{{- end -}}
{{- define "egress-guard.policiesConfigMapName" -}}{{ include "egress-guard.fullname" . }}-policies{{- end -}}
{{- define "egress-guard.webhookConfigurationName" -}}{{ include "egress-guard.fullname" . }}{{- end -}}
{{/* The Secret holding the serving certificate, in either mode. */}}
{{- define "egress-guard.tlsSecretName" -}}{{ include "egress-guard.fullname" . }}-tls{{- end -}}
{{- define "egress-guard.certificateName" -}}{{ include "egress-guard.fullname" . }}-tls{{- end -}}
{{- define "egress-guard.selfSignedIssuerName" -}}{{ include "egress-guard.fullname" . }}-selfsigned{{- end -}}
{{- define "egress-guard.caName" -}}{{ include "egress-guard.fullname" . }}-ca{{- end -}}

{{- define "egress-guard.certManager" -}}
{{- if eq .Values.certificates.mode "cert-manager" -}}true{{- end -}}
{{- end -}}
{{- define "egress-guard.selfManaged" -}}
{{- if eq .Values.certificates.mode "self-managed" -}}true{{- end -}}
{{- end -}}
{{/*
serve's periodic audit is on: config.audit.interval is set and not zero. The
schema allows only Go durations (or "0") there, so any digit 1-9 makes it
non-zero.
*/}}
{{- define "egress-guard.audit" -}}
{{- $interval := toString ((.Values.config.audit | default dict).interval | default "") -}}
{{- if regexMatch "[1-9]" $interval -}}true{{- end -}}
{{- end -}}
{{/* The report API the audit writes: openreports (serve's default) or wgpolicyk8s. */}}
{{- define "egress-guard.reportAPI" -}}
{{- (.Values.config.audit | default dict).reportAPI | default "openreports" -}}
{{- end -}}
{{/*
The pods call the Kubernetes API: self-managed certificates, Events, the
inventory or the audit. serve then also runs the audit's leader election (idle
while the audit is off, so that a reloaded configuration can turn it on), so
the audit's Lease is granted whenever this is true.
*/}}
{{- define "egress-guard.apiAccess" -}}
{{- if or (include "egress-guard.selfManaged" .) .Values.events.enabled .Values.inventory.enabled (include "egress-guard.audit" .) -}}true{{- end -}}
{{- end -}}
{{/* The chart creates the self-signed CA chain: cert-manager mode without an issuerRef. */}}
{{- define "egress-guard.ownCA" -}}
{{- if and (include "egress-guard.certManager" .) (not .Values.certificates.certManager.issuerRef.name) -}}true{{- end -}}
{{- end -}}

{{/* The DNS names the API server may use for the webhook Service. */}}
{{- define "egress-guard.dnsNames" -}}
{{- $svc := include "egress-guard.serviceName" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.config.clusterDomain) | toJson -}}
{{- end -}}

{{/*
Namespaces that are never policed: kube-system and the release namespace come
first, whatever the values say, so the guard can never block its own recovery.
*/}}
{{- define "egress-guard.neverPoliced" -}}
{{- list "kube-system" .Release.Namespace | uniq | toJson -}}
{{- end -}}

{{/* The EgressGuardConfig document of the ConfigMap. */}}
{{- define "egress-guard.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $exempt := concat (include "egress-guard.neverPoliced" . | fromJsonArray) ($cfg.exemptNamespaces | default list) | uniq -}}
{{- $_ := set $cfg "exemptNamespaces" $exempt -}}
{{- /* No platform namespaces given: serve's default (the root namespace and the gateway's). */ -}}
{{- if and $cfg.platform (not $cfg.platform.namespaces) -}}
{{- $_ := unset $cfg.platform "namespaces" -}}
{{- end -}}
{{- $doc := dict "apiVersion" "egressguard.io/v1alpha1" "kind" "EgressGuardConfig" -}}
{{- toYaml (merge $doc $cfg) -}}
{{- end -}}

{{/*
The namespaceSelector of both webhooks: never kube-system, the release
namespace, the excluded namespaces or a namespace with the opt-out label, and
whatever more the values ask for.
*/}}
{{- define "egress-guard.namespaceSelector" -}}
{{- $excluded := concat (include "egress-guard.neverPoliced" . | fromJsonArray) .Values.webhook.excludedNamespaces | uniq -}}
{{- $sel := .Values.webhook.namespaceSelector -}}
{{- with $sel.matchLabels }}
matchLabels:
  {{- toYaml . | nindent 2 }}
{{- end }}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- toYaml $excluded | nindent 6 }}
  - key: {{ .Values.webhook.optOutLabel }}
    operator: DoesNotExist
  {{- with $sel.matchExpressions }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/*
The policed kinds (config.kinds) by API group, in order of first appearance:
a JSON list of {group, resources}, each group's resources in list order.
*/}}
{{- define "egress-guard.kindGroups" -}}
{{- $groups := list -}}
{{- $resources := dict -}}
{{- range .Values.config.kinds -}}
{{- if not (hasKey $resources .group) -}}
{{- $groups = append $groups .group -}}
{{- end -}}
{{- $_ := set $resources .group (append (get $resources .group | default list) .resource | uniq) -}}
{{- end -}}
{{- $out := list -}}
{{- range $groups -}}
{{- $out = append $out (dict "group" . "resources" (get $resources .)) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* The resource of VirtualService (networking.istio.io) when it is policed, else "". */}}
{{- define "egress-guard.virtualServices" -}}
{{- range .Values.config.kinds -}}
{{- if and (eq .group "networking.istio.io") (eq .kind "VirtualService") -}}{{ .resource }}{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The fields both webhooks share, after name and clientConfig. Called with
(dict "root" $ "validating" true|false).
*/}}
{{- define "egress-guard.webhookCommon" -}}
{{- $root := .root -}}
admissionReviewVersions: ["v1"]
# One rule per API group of config.kinds. Every served version; with
# matchPolicy Equivalent a request through a version added later is
# converted and sent as well.
rules:
{{- range include "egress-guard.kindGroups" $root | fromJsonArray }}
  - apiGroups: [{{ .group | quote }}]
    apiVersions: ["*"]
    operations: ["CREATE", "UPDATE"]
    resources: {{ .resources | toJson }}
    scope: Namespaced
{{- end }}
{{- with include "egress-guard.virtualServices" $root }}
{{- if $.validating }}
  # Deleting a VirtualService can leave its external host's traffic without
  # the route through the gateway (EGR204). Only this deletion is sent: while
  # no replica answers, the failurePolicy holds back no other deletion.
  - apiGroups: ["networking.istio.io"]
    apiVersions: ["*"]
    operations: ["DELETE"]
    resources: [{{ . | quote }}]
    scope: Namespaced
{{- end }}
{{- end }}
{{- with $root }}
matchPolicy: Equivalent
namespaceSelector:
  {{- include "egress-guard.namespaceSelector" . | trim | nindent 2 }}
sideEffects: {{ .Values.webhook.sideEffects }}
timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
failurePolicy: {{ .Values.webhook.failurePolicy }}
{{- end }}
{{- end -}}

{{/* Workloads are policed: config.workloads.enabled, true when absent as in serve. */}}
{{- define "egress-guard.workloads" -}}
{{- $w := .Values.config.workloads | default dict -}}
{{- if or (not (hasKey $w "enabled")) $w.enabled -}}true{{- end -}}
{{- end -}}

{{/*
The workload webhooks, one per way a namespace joins the mesh, scoped as
Istio's sidecar injector scopes its own (a label selector cannot say OR) and
exclusive, so that no namespace is sent a workload twice: a JSON list of
{name, mesh}, mesh the namespace requirements added to the exclusions of
egress-guard.namespaceSelector. The Go side's config.MeshNamespace says the
same (the audit reads the workloads of those namespaces).
*/}}
{{- define "egress-guard.workloadWebhooks" -}}
{{- list
  (dict "name" "workloads.egressguard.io" "mesh" (list
    (dict "key" "istio-injection" "operator" "In" "values" (list "enabled"))))
  (dict "name" "workloads-rev.egressguard.io" "mesh" (list
    (dict "key" "istio.io/rev" "operator" "Exists")
    (dict "key" "istio-injection" "operator" "DoesNotExist")))
  (dict "name" "workloads-ambient.egressguard.io" "mesh" (list
    (dict "key" "istio.io/dataplane-mode" "operator" "In" "values" (list "ambient"))
    (dict "key" "istio-injection" "operator" "DoesNotExist")
    (dict "key" "istio.io/rev" "operator" "DoesNotExist")))
  | toJson -}}
{{- end -}}

{{/*
The namespaceSelector of a workload webhook: egress-guard.namespaceSelector
(the exclusions and the values' conditions) and the mesh requirements.
Called with (dict "root" $ "mesh" <list of requirements>).
*/}}
{{- define "egress-guard.workloadNamespaceSelector" -}}
{{- $sel := include "egress-guard.namespaceSelector" .root | fromYaml -}}
{{- $_ := set $sel "matchExpressions" (concat $sel.matchExpressions .mesh) -}}
{{- toYaml $sel -}}
{{- end -}}

{{/* Annotations of both webhook configurations, as a YAML map (empty when none). */}}
{{- define "egress-guard.webhookAnnotations" -}}
{{- $a := deepCopy .Values.webhook.annotations -}}
{{- if include "egress-guard.certManager" . -}}
{{- $_ := set $a "cert-manager.io/inject-ca-from" (printf "%s/%s" .Release.Namespace (include "egress-guard.certificateName" .)) -}}
{{- end -}}
{{- with $a -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/* Checks of values that values.schema.json cannot express. */}}
{{- define "egress-guard.validate" -}}
{{- $s := .Values.shutdown -}}
{{- if le (int $s.terminationGracePeriodSeconds) (add $s.preStopSleepSeconds $s.timeoutSeconds | int) -}}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%d) must exceed shutdown.preStopSleepSeconds + shutdown.timeoutSeconds (%d + %d)" (int $s.terminationGracePeriodSeconds) (int $s.preStopSleepSeconds) (int $s.timeoutSeconds)) -}}
{{- end -}}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) -}}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor selects the metrics Service" -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $i, $k := .Values.config.kinds -}}
{{- $key := printf "%s/%s" $k.group $k.kind -}}
{{- if hasKey $seen $key -}}
{{- fail (printf "config.kinds[%d]: duplicated kind %s in group %s (config.kinds[%d] names it too)" $i $k.kind $k.group (get $seen $key | int)) -}}
{{- end -}}
{{- $_ := set $seen $key $i -}}
{{- if has $key (list "apps/Deployment" "apps/StatefulSet" "apps/DaemonSet" "apps/ReplicaSet" "batch/Job" "batch/CronJob") -}}
{{- fail (printf "config.kinds[%d]: %s (group %s) is a workload kind: it is policed through config.workloads.enabled" $i $k.kind $k.group) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
A report CRD of files/crds, as published, with helm.sh/resource-policy: keep:
helm uninstall (or turning the value off) leaves the CRD, and so every
report in the cluster, in place. Called with (list $ "files/crds/<file>").
*/}}
{{- define "egress-guard.reportCRD" -}}
{{- $root := index . 0 -}}
{{- $file := index . 1 -}}
{{- $crd := $root.Files.Get $file | fromYaml -}}
{{- if or (ne ($crd.kind | default "") "CustomResourceDefinition") (hasKey $crd "Error") -}}
{{- fail (printf "%s is not a CustomResourceDefinition" $file) -}}
{{- end -}}
{{- $annotations := $crd.metadata.annotations | default dict -}}
{{- $_ := set $annotations "helm.sh/resource-policy" "keep" -}}
{{- $_ := set $crd.metadata "annotations" $annotations -}}
{{- toYaml $crd -}}
{{- end -}}

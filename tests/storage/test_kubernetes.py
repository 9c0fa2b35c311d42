"""The Kubernetes manifests, validated offline against the Kubernetes API's schemas, and what they promise."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

KUBE = ROOT / "kubernetes"
K8S_VERSION = "1.30.0"


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def resources() -> list[dict]:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    return [d for name in kustomization["resources"] for d in documents(KUBE / name)]


def by_kind(kind: str, name: str) -> dict:
    return next(d for d in resources() if d["kind"] == kind and d["metadata"]["name"] == name)


def test_every_manifest_is_valid_against_the_kubernetes_schemas() -> None:
    import kubernetes_validate

    docs = resources() + documents(KUBE / "gpu" / "workers-gpu.yaml")
    assert {d["kind"] for d in docs} >= {"Service", "StatefulSet", "PersistentVolumeClaim", "Job", "Deployment"}
    for doc in docs[:-1]:  # the GPU patch is partial by design: checked below
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    # The validator can fail: a misspelt field is refused.
    broken = by_kind("Job", "hpsearch-workers")
    broken["spec"]["paralellism"] = 4
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kustomization_names_files_that_exist() -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    for name in kustomization["resources"] + kustomization["configMapGenerator"][0]["files"]:
        assert (KUBE / name).is_file(), name
    assert kustomization["secretGenerator"][0]["envs"] == ["secret.env"]
    assert (KUBE / "secret.env.example").is_file() and "kubernetes/secret.env" in (ROOT / ".gitignore").read_text()
    gpu = yaml.safe_load((KUBE / "gpu" / "kustomization.yaml").read_text())
    assert gpu["resources"] == [".."] and (KUBE / "gpu" / gpu["patches"][0]["path"]).is_file()
    patch = documents(KUBE / "gpu" / "workers-gpu.yaml")[0]
    worker = patch["spec"]["template"]["spec"]["containers"][0]
    assert worker["name"] == "worker" and worker["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_workers_are_an_indexed_job_that_waits_for_the_study() -> None:
    from hpsearch.search.spec import StudySpec

    job = by_kind("Job", "hpsearch-workers")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"] >= 1
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "OnFailure"
    worker = pod["containers"][0]
    assert "hpsearch worker" in " ".join(worker["command"]) and worker["resources"]["requests"]["cpu"]
    env = {e["name"]: e for e in worker["env"]}
    assert env["HPSEARCH_WORKER_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"].endswith("job-completion-index']")
    assert env["HPSEARCH_THREADS"]["value"] == str(worker["resources"]["requests"]["cpu"])
    assert "hpsearch status" in " ".join(pod["initContainers"][0]["command"])
    study = yaml.safe_load((KUBE / "study.yaml").read_text())
    assert env["HPSEARCH_STUDY"]["value"] == study["study"]
    StudySpec.from_dict(study, "kubernetes/study.yaml")  # the shipped spec is valid
    create = by_kind("Job", "hpsearch-create-study")["spec"]["template"]["spec"]["containers"][0]
    assert create["command"][:2] == ["hpsearch", "create"]


def test_credentials_come_from_the_secret_and_the_dashboard_stays_inside() -> None:
    for doc in resources():
        text = yaml.safe_dump(doc)
        assert "change-me" not in text and "postgresql+psycopg://" not in text  # no credential in a manifest
        if doc["kind"] == "Service":
            assert doc["spec"]["type"] == "ClusterIP"
    for kind, name in (("Job", "hpsearch-workers"), ("Job", "hpsearch-create-study"),
                       ("Deployment", "hpsearch-dashboard")):
        container = by_kind(kind, name)["spec"]["template"]["spec"]["containers"][0]
        storage = next(e for e in container["env"] if e["name"] == "HPSEARCH_STORAGE")
        assert storage["valueFrom"]["secretKeyRef"] == {"name": "hpsearch-db", "key": "HPSEARCH_STORAGE"}
    assert not any(d["kind"] == "Ingress" for d in resources())


def test_the_s3_overlay_points_every_artifact_user_at_one_bucket_with_credentials_from_a_secret() -> None:
    import copy

    import kubernetes_validate

    from hpsearch.storage.artifacts import parse_s3

    overlay = yaml.safe_load((KUBE / "s3" / "kustomization.yaml").read_text())
    assert overlay["resources"] == [".."] and overlay["secretGenerator"][0]["envs"] == ["s3.env"]
    assert (KUBE / "s3" / "s3.env.example").is_file() and "kubernetes/s3/s3.env" in (ROOT / ".gitignore").read_text()
    patches = documents(KUBE / "s3" / overlay["patches"][0]["path"])
    locations = set()
    for patch in patches:
        target = copy.deepcopy(by_kind(patch["kind"], patch["metadata"]["name"]))
        [change] = patch["spec"]["template"]["spec"]["containers"]
        container = target["spec"]["template"]["spec"]["containers"][0]
        assert container["name"] == change["name"]  # a strategic merge patch meets its container by name
        assert change["envFrom"] == [{"secretRef": {"name": overlay["secretGenerator"][0]["name"]}}]
        [artifacts] = change["env"]
        assert any(e["name"] == artifacts["name"] for e in container["env"])
        locations.add(str(parse_s3(artifacts["value"])))
        # The merged container (env entries by name, envFrom added) is a valid resource.
        container["env"] = [artifacts if e["name"] == artifacts["name"] else e for e in container["env"]]
        container["envFrom"] = change["envFrom"]
        kubernetes_validate.validate(target, K8S_VERSION, strict=True)
    assert {p["metadata"]["name"] for p in patches} == {"hpsearch-workers", "hpsearch-create-study",
                                                        "hpsearch-dashboard"}
    assert len(locations) == 1  # writers and readers see the same bucket and prefix


def test_the_proxy_overlay_puts_every_worker_behind_one_proxy_only_workers_reach() -> None:
    import copy

    import kubernetes_validate

    from hpsearch.storage.proxy import proxy_address

    overlay = yaml.safe_load((KUBE / "proxy" / "kustomization.yaml").read_text())
    assert overlay["resources"][0] == ".." and all((KUBE / "proxy" / r).is_file() for r in overlay["resources"][1:])
    added = [d for r in overlay["resources"][1:] for d in documents(KUBE / "proxy" / r)]
    for doc in added:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    kinds = {d["kind"]: d for d in added}
    assert kinds["Service"]["spec"]["type"] == "ClusterIP"
    proxy = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    port = int(proxy["command"][proxy["command"].index("--port") + 1])
    storage = next(e for e in proxy["env"] if e["name"] == "HPSEARCH_STORAGE")
    assert storage["valueFrom"]["secretKeyRef"]["name"] == "hpsearch-db"  # the database URL stays in the Secret
    # Only worker pods may reach the proxy (it has no authentication).
    rule = kinds["NetworkPolicy"]["spec"]["ingress"][0]
    worker_labels = by_kind("Job", "hpsearch-workers")["spec"]["template"]["metadata"]["labels"]
    assert rule["from"][0]["podSelector"]["matchLabels"].items() <= worker_labels.items()
    assert rule["ports"] == [{"port": port}]
    # The patched workers (init step and worker) use the proxy's Service as their storage; merged, they validate.
    [patch] = documents(KUBE / "proxy" / overlay["patches"][0]["path"])
    job = copy.deepcopy(by_kind("Job", "hpsearch-workers"))
    pod = job["spec"]["template"]["spec"]
    for group in ("initContainers", "containers"):
        for change in patch["spec"]["template"]["spec"][group]:
            target = next(c for c in pod[group] if c["name"] == change["name"])
            [env] = change["env"]
            assert env["valueFrom"] is None  # strategic merge: drops the Secret reference
            assert proxy_address(env["value"]) == (kinds["Service"]["metadata"]["name"], port)
            target["env"] = [{"name": env["name"], "value": env["value"]} if e["name"] == env["name"] else e
                             for e in target["env"]]
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)

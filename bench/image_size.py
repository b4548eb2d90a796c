"""Build the image (both variants) and print how much each adds above its base image.

    sudo python3 bench/image_size.py [--base IMAGE] [--variants ocr,no-ocr] [--keep]

It really builds the repository's Dockerfile: with `docker build` when a Docker engine answers,
else daemonless with buildah (apt-get install buildah; run as root: vfs storage, chroot
isolation). When the base (python:3.11-slim) can neither be found nor pulled, as on our sandbox
machines (no Docker Hub), it makes a stand-in with debootstrap: Debian bookworm minbase plus
Debian's python3.11 and venv (what the Dockerfile needs of its base: `python`, `python -m venv`,
apt-get and useradd), imports it as localhost/python-standin:3.11-slim and builds FROM it
(build arg BASE). The stand-in carries this machine's CA bundle and PIP_CERT, so pip works
behind a TLS-inspecting proxy; neither changes what the bot's stages add.

Per variant it prints the uncompressed size of the layers above the base (what `docker images`
adds up) and their gzip size (what a pull downloads), from the image pushed to an OCI layout.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
STANDIN = "localhost/python-standin:3.11-slim"
VARIANTS = {"ocr": "1", "no-ocr": "0"}
MB = 1_000_000


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, **kw)


def ok(cmd: list[str]) -> bool:
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


class Engine:
    """docker (a running engine) or buildah (daemonless): build, has/pull, push to an OCI layout."""

    def __init__(self) -> None:
        if shutil.which("docker") and ok(["docker", "info"]):
            self.cli, self.name = ["docker"], "docker"
        elif shutil.which("buildah"):
            if os.geteuid() != 0:
                sys.exit("buildah needs root here (vfs storage, chroot isolation): run with sudo")
            self.cli, self.name = ["buildah", "--storage-driver", "vfs"], "buildah"
        else:
            sys.exit("no Docker engine and no buildah: apt-get install buildah")

    def has(self, image: str) -> bool:
        sub = ["image", "inspect"] if self.name == "docker" else ["inspect", "--type", "image"]
        return ok(self.cli + sub + [image])

    def pull(self, image: str) -> bool:
        return ok(self.cli + ["pull", image])

    def build(self, tag: str, base: str, ocr: str) -> None:
        args = ["--build-arg", f"BASE={base}", "--build-arg", f"OCR={ocr}", "-t", tag, str(REPO)]
        if self.name == "docker":
            run(self.cli + ["build"] + args)
        else:  # --format docker keeps HEALTHCHECK (the OCI format has no field for it)
            run(self.cli + ["bud", "--isolation", "chroot", "--network", "host", "--format", "docker",
                            "--layers=false"] + args)

    def layers(self, image: str, out: Path) -> list[Layer]:
        """The image's layers, bottom first."""
        if self.name == "docker":  # docker save gives uncompressed tars; gzip them ourselves
            return docker_layers(image, out)
        run(self.cli + ["push", "--quiet", image, f"oci:{out}"], stdout=subprocess.DEVNULL)
        return oci_layers(out)

    def remove(self, image: str) -> None:
        subprocess.run(self.cli + ["rmi", image], stdout=subprocess.DEVNULL)


class Layer(NamedTuple):
    diff_id: str  # digest of the uncompressed tar: the same layer has the same id in both images
    tar_bytes: int  # uncompressed: what `docker images` adds up
    gzip_bytes: int  # compressed: what a pull downloads


def oci_layers(layout: Path) -> list[Layer]:
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob_path(layout, index["manifests"][0]["digest"]).read_text())
    config = json.loads(blob_path(layout, manifest["config"]["digest"]).read_text())
    layers = []
    for diff_id, layer in zip(config["rootfs"]["diff_ids"], manifest["layers"]):
        path = blob_path(layout, layer["digest"])
        with gzip.open(path) as tar:  # count the uncompressed bytes
            tar_bytes = sum(len(chunk) for chunk in iter(lambda: tar.read(1 << 20), b""))
        layers.append(Layer(diff_id, tar_bytes, layer["size"]))
    return layers


def blob_path(layout: Path, digest: str) -> Path:
    algo, hexdigest = digest.split(":")
    return layout / "blobs" / algo / hexdigest


def docker_layers(image: str, out: Path) -> list[Layer]:
    archive = out.with_suffix(".tar")
    run(["docker", "save", "-o", str(archive), image])
    layers = []
    with tarfile.open(archive) as saved:
        manifest = json.load(saved.extractfile("manifest.json"))[0]
        config = json.load(saved.extractfile(manifest["Config"]))
        for diff_id, name in zip(config["rootfs"]["diff_ids"], manifest["Layers"]):
            data = saved.extractfile(name).read()
            layers.append(Layer(diff_id, len(data), len(gzip.compress(data, 6))))
    archive.unlink()
    return layers


def make_standin(engine: Engine) -> str:
    """Debian bookworm minbase + python3.11 (+ venv), imported as STANDIN (buildah only)."""
    if engine.has(STANDIN):
        return STANDIN
    if engine.name != "buildah" or not shutil.which("debootstrap"):
        sys.exit("the base cannot be pulled and no stand-in can be made: apt-get install debootstrap buildah")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(["debootstrap", "--variant=minbase",
             "--include=python3.11,python3.11-venv,python3-venv,python-is-python3,ca-certificates",
             "bookworm", str(rootfs), "http://deb.debian.org/debian"], stdout=subprocess.DEVNULL)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / junk).glob("*"):
                if path.is_file():
                    path.unlink()
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/ca-certificates.crt")
        ctr = subprocess.run(engine.cli + ["from", "scratch"], check=True, capture_output=True,
                             text=True).stdout.strip()
        try:
            # tar keeps owners, modes and device nodes (buildah copy would make everything root's)
            mnt = subprocess.run(engine.cli + ["mount", ctr], check=True, capture_output=True,
                                 text=True).stdout.strip()
            run(["sh", "-c", 'tar -C "$1" -cf - . | tar -C "$2" -xpf -', "-", str(rootfs), mnt])
            run(engine.cli + ["config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                              "--env", "LANG=C.UTF-8", "--env", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                              "--cmd", "python3", ctr])
            run(engine.cli + ["commit", "--quiet", "--format", "docker", ctr, STANDIN], stdout=subprocess.DEVNULL)
        finally:
            subprocess.run(engine.cli + ["rm", ctr], stdout=subprocess.DEVNULL)
    return STANDIN


def added(image: list[Layer], base: list[Layer]) -> list[Layer]:
    """The layers the image adds on top of its base."""
    assert [la.diff_id for la in image[:len(base)]] == [la.diff_id for la in base], \
        "the image does not start with its base's layers"
    return image[len(base):]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="python:3.11-slim")
    parser.add_argument("--variants", default="ocr,no-ocr")
    parser.add_argument("--keep", action="store_true", help="keep the built images (dayu-bot:<variant>)")
    args = parser.parse_args()
    engine = Engine()
    base = args.base
    if not engine.has(base) and not engine.pull(base):
        print(f"{base} cannot be pulled here: building FROM a Debian stand-in ({STANDIN})", file=sys.stderr)
        base = make_standin(engine)
    rows = []
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        def layers(image: str) -> list[Layer]:
            return engine.layers(image, Path(tmp) / image.replace("/", "_").replace(":", "_"))

        base_layers = layers(base)
        for variant in args.variants.split(","):
            tag = f"localhost/dayu-bot:{variant}"
            engine.build(tag, base, VARIANTS[variant])
            rows.append((variant, added(layers(tag), base_layers)))
            if not args.keep:
                engine.remove(tag)
    base_mb = sum(la.tar_bytes for la in base_layers) / MB
    print(f"\nengine: {engine.name}; base: {base} ({base_mb:.0f} MB)")
    print(f"{'variant':8} {'above the base':>15} {'gzip (a pull)':>14}")
    for variant, top in rows:
        tar_mb, gz_mb = sum(la.tar_bytes for la in top) / MB, sum(la.gzip_bytes for la in top) / MB
        print(f"{variant:8} {tar_mb:12.0f} MB {gz_mb:11.0f} MB")


if __name__ == "__main__":
    main()

"""`POST /api/v1/jobs/<id>/artefact` and `.../upload_state` (PROTOCOL.md §15).

Screenshots go to the md5-addressed images store, logs and result files to results/<job id>/, and
asset chunks (Storable hashes, §15.3) are assembled under share/factory/tmp/ and moved into
share/factory/<type>/ once the last chunk verified. All disk work runs in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from backend.fsutil import write_atomic
from backend.mockweb import storable
from backend.mockweb.context import json_error, ui_of
from backend.mockweb.jobs import image_path
from backend.mockweb.model import ArtefactRecord, MockJob

if TYPE_CHECKING:
    from backend.mockweb.server import MockWebUI

FULL_CHECK_LIMIT = 250_000_000  # above this only the size of an assembled asset is compared
_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")


def add_routes(app: web.Application) -> None:
    app.router.add_post(r"/api/v1/jobs/{id:\d+}/artefact", artefact)
    app.router.add_post(r"/api/v1/jobs/{id:\d+}/upload_state", upload_state)


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    data: bytes = b""


async def read_upload(request: web.Request) -> Upload:
    upload = Upload()
    if not request.content_type.startswith("multipart/"):
        form = await request.post()
        upload.fields = {k: str(v) for k, v in form.items()}
        return upload
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue  # nested multipart: never sent by workers
        if part.filename is not None or part.name == "file":
            upload.filename = (part.filename or "").replace("%22", '"')
            upload.data = bytes(await part.read())
        else:
            upload.fields[part.name or ""] = await part.text()
    return upload


def safe_name(name: str) -> str | None:
    base = Path(name).name
    return base if base and base not in (".", "..") else None


def asset_type(name: str) -> str:
    lower = name.lower()
    if lower.endswith(".iso"):
        return "iso"
    if lower.endswith((".qcow2", ".raw", ".vhd", ".vhdx")):
        return "hdd"
    return "other"


async def artefact(request: web.Request) -> web.Response:
    ui = ui_of(request)
    job_id = int(request.match_info["id"])
    job = ui.jobs.get(job_id)
    if job is None:
        return json_error(f"Specified job {job_id} does not exist", 404)
    if job.assigned_worker_id is None:
        return json_error("No worker assigned", 404)
    worker = ui.workers.get(job.assigned_worker_id)
    if worker is not None:
        worker.t_seen = time.time()
    upload = await read_upload(request)
    fields = upload.fields
    if fields.get("asset"):
        return await _asset(ui, job, upload)
    name = safe_name(upload.filename or "")
    if name is None:
        return json_error("Erroneous parameters (file missing)", 400)
    if fields.get("image") == "1":
        md5 = fields.get("md5", "")
        if not _MD5.match(md5):
            return json_error("Erroneous parameters (md5 invalid)", 400)
        thumb = fields.get("thumb") == "1"
        await asyncio.to_thread(_write, image_path(ui.data_dir / "images", md5.lower(), thumb), upload.data)
        kind = "thumb" if thumb else "image"
        job.artefacts.append(ArtefactRecord(name, kind, md5.lower(), len(upload.data)))
        return web.Response(text="OK")
    assert job.results_dir is not None
    if fields.get("ulog") == "1":
        await asyncio.to_thread(_write, job.results_dir / "ulogs" / name, upload.data)
        job.artefacts.append(ArtefactRecord(name, "ulog", None, len(upload.data)))
        return web.Response(text="OK")
    await asyncio.to_thread(_write, job.results_dir / name, upload.data)
    kind = "file" if name in _detail_files(job) else "log"
    job.artefacts.append(ArtefactRecord(name, kind, None, len(upload.data)))
    return web.Response(text="OK")


def _detail_files(job: MockJob) -> set[str]:
    names: set[str] = set()
    for module in job.modules.values():
        for detail in module.get("details") or []:
            if isinstance(detail, dict):
                names.update(str(detail[k]) for k in ("text", "audio") if detail.get(k))
    return names


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)  # a unique temporary name: uploads of the same file may overlap


async def _asset(ui: MockWebUI, job: MockJob, upload: Upload) -> web.Response:
    scope = "private" if upload.fields.get("asset") == "private" else "public"
    name = safe_name(upload.filename or "")
    factory = ui.data_dir / "share" / "factory"
    try:
        if name is None:
            raise ValueError("no asset name given")
        if upload.fields.get("local"):
            local = upload.fields["local"]
            final = await asyncio.to_thread(receive_local, factory, job.id, scope, name, local)
        else:
            final = await asyncio.to_thread(receive_chunk, factory, job.id, scope, name, upload.data)
    except (ValueError, OSError, KeyError, storable.StorableError) as exc:
        return json_error(f"Failed receiving asset: {exc}", 500)
    if final is not None:
        job.assets.append(final)
        size = (factory / asset_type(final) / final).stat().st_size
        job.artefacts.append(ArtefactRecord(final, "asset", None, size))
    return web.json_response({"status": "ok"})


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode().rstrip("=")


def final_name(job_id: int, scope: str, name: str) -> str:
    return f"{job_id:08d}-{name}" if scope == "private" else name


def chunk_dir(factory: Path, job_id: int, scope: str, name: str) -> Path:
    return factory / "tmp" / scope / f"{job_id:08d}" / f"{name}.CHUNKS"


def receive_chunk(factory: Path, job_id: int, scope: str, name: str, blob: bytes) -> str | None:
    """Store one chunk; returns the final asset name when it was the last one."""
    chunk: Any = storable.loads(blob)
    if not isinstance(chunk, dict):
        raise ValueError("chunk is not a hash")
    content = bytes.fromhex(str(chunk["content"]))
    start, end = int(chunk["start"]), int(chunk["end"])
    index, total = int(chunk["index"]), int(chunk["total"])
    if _b64(hashlib.sha1(content).digest()) != str(chunk["cksum"]):
        raise ValueError(f"Can't verify chunk {index} of {name}: checksum mismatch")
    if end - start != len(content):
        raise ValueError(f"chunk {index} of {name}: range {start}-{end} does not match {len(content)} bytes")
    tmp = chunk_dir(factory, job_id, scope, name) / name
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "r+b" if tmp.exists() else "w+b") as fh:
        fh.seek(start)
        fh.write(content)
        fh.seek(start)
        if _b64(hashlib.sha1(fh.read(len(content))).digest()) != str(chunk["cksum"]):
            raise ValueError(f"Can't verify written chunk {index} of {name}")
    if index != total:
        return None
    _verify_whole(tmp, end, str(chunk["total_cksum"]))
    final = final_name(job_id, scope, name)
    dest = factory / asset_type(final) / final
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, dest)
    shutil.rmtree(tmp.parent, ignore_errors=True)
    return final


def _verify_whole(path: Path, size: int, total_cksum: str) -> None:
    actual = path.stat().st_size
    if actual != size:
        raise ValueError(f"Size of {path.name} differs: expected {size}, got {actual}")
    if size > FULL_CHECK_LIMIT:
        return
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1024 * 1024):
            sha.update(block)
    if _b64(sha.digest()) != total_cksum:
        raise ValueError(f"Checksum mismatch for {path.name}: expected {total_cksum}")


def receive_local(factory: Path, job_id: int, scope: str, name: str, local: str) -> str:
    source = Path(local)
    if not source.is_file():
        raise ValueError(f"local file {local} does not exist")
    final = final_name(job_id, scope, name)
    dest = factory / asset_type(final) / final
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    return final


async def upload_state(request: web.Request) -> web.Response:
    ui = ui_of(request)
    job_id = int(request.match_info["id"])
    job = ui.jobs.get(job_id)
    if job is None:
        return json_error(f"Specified job {job_id} does not exist", 404)
    form = {k: str(v) for k, v in (await request.post()).items()}
    form.update({k: v for k, v in request.query.items() if k not in form})
    job.upload_states.append(form)
    name = safe_name(form.get("filename", ""))
    if form.get("state") == "fail" and name is not None:
        scope = "private" if form.get("scope") == "private" else "public"
        target = chunk_dir(ui.data_dir / "share" / "factory", job_id, scope, name)
        await asyncio.to_thread(shutil.rmtree, target, True)
    return web.Response(text="OK")

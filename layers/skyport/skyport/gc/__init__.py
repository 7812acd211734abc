"""Online garbage collection (issue 12): mark and sweep over the metadata while the
registry keeps taking pushes.

What goes: links (``REPO#<r> / BLOB#<d>``) that no manifest of <r> references; blobs
(``BLOB#<d> / META`` and their S3 object) that no surviving link names; and objects under
``blobs/`` and ``uploads/`` that no blob record and no open upload session names (the
crash leftovers). Nothing goes that was used within the grace period G.

The run
-------
A run has a start time S and a cutoff C = S - G (G: 24 h by default; ``--grace``,
SKYPORT_GC_GRACE). It goes through three phases (four with ``--untagged``), each paged,
its cursor saved in the run item (``GC / RUN``) after every page, so that a run bigger
than one Lambda invocation is continued by the next one:

0. **manifests** (only with ``--untagged``): repository by repository from the catalog,
   the manifests no tag names, that no manifest of the repository lists (an index's
   children) and that are not a referrer of a manifest still there, written
   (``pushed_ms``) and referenced (``used_ms``) before C, are deleted with their referrer
   entry under ``MANIFEST_UNUSED_SINCE`` (a tag written since rewrote the item and bumped
   ``pushed_ms``; an index pushed since stamped ``used_ms``), each emitting the usual
   ``manifest.deleted``; an emptied repository leaves the catalog
   (``forget_repository_if_empty``). A referrer whose subject goes in this run goes in the
   next. Bodies of deleted manifests kept in S3 (``manifests/``, content-addressed and
   possibly shared) are left in place.
1. **links**: a consistent, paged Scan of the link items. For each repository met, the
   digests every one of its manifests references (config, layers, ``blobs``, child
   ``manifests``, subject; bodies inline or in S3) are read by a consistent Query — one
   repository's set in memory at a time. A link that no manifest references and whose
   ``used_ms`` is older than C is deleted under ``LINK_UNUSED_SINCE`` (``used_ms`` absent
   or < C). Every other link survives, and marks its blob: ``gc_mark = <run id>`` on
   ``BLOB#<d> / META`` (a bounded LRU skips repeated marks of shared base layers). A
   repository whose manifests cannot all be read (a body missing from S3, not JSON) keeps
   every link this run.
2. **blobs**: a consistent, paged Scan of the META items. A blob whose ``gc_mark`` is not
   this run's and whose ``used_ms`` is older than C is deleted under
   ``BLOB_UNMARKED_AND_UNUSED``; only after that delete succeeded is its S3 object deleted
   (a crash in between leaves an orphan object, which phase 3 of a later run removes).
3. **orphans**: the S3 keys every META names are read (one more Scan) into a set of 8-byte
   hashes (``hashes.HashSet64``: 8 bytes a blob); then a paged listing of ``blobs/`` and
   ``uploads/``: an object older than C (LastModified), whose key no META names and whose
   upload (``blobs/<id>``, ``uploads/<id>/…``) has no ``UPLOAD#<id>`` session, is deleted.
   Multipart uploads are never aborted here, and nothing an open session names is
   touched: abandoned uploads are the upload-expiry job's (it owns sessions and their
   multipart uploads).

Why nothing a committed manifest references is ever removed
-----------------------------------------------------------
Every write that makes content live stamps it with ``used_ms`` = now
(storage/dynamodb/blobs.py, manifests.py):

- a link, on every write of it (upload completion, mount, direct upload);
- a manifest push's transaction turns each reference check into an ``Update`` that sets
  ``used_ms`` under the same condition (``LINK_EXISTS_WITH_SIZE`` on links,
  ``ITEM_EXISTS`` on child manifests). References beyond one transaction are checked by
  reading, then stamped by conditional UpdateItems before the transaction;
- the blob's META: when created, when an upload of a digest already recorded completes,
  and when a mount links it — META is touched first, conditional on it existing, and the
  link is written after, from the record the touch returned. If the touch fails (the
  collector removed the blob), the mount is refused (the client uploads instead) and the
  upload records its own META, as if the blob were new.

Items from before these stamps have no ``used_ms``: they count as old, which is how
existing garbage is collected, and is safe because any new use stamps them.

Take a manifest M committed in repository r, before, during or after the run, and a blob
d it references. M's transaction requires the link (r, d) to exist when it commits.

- *Link (r, d).* The link phase deletes it only if no manifest of r referenced d when it
  read r's manifests (a consistent Query, at a time Q >= S), and only under
  LINK_UNUSED_SINCE. If M committed before Q, the Query saw M and the link is kept. If M
  commits after Q, the delete and M's transaction are both atomic on the link item, so one
  of them comes first: M first, then M's Update stamped ``used_ms`` = its commit time >= Q
  >= S >= C, so the stamp is not below the cutoff and the delete's condition fails; or
  the delete first, then the link is gone and M's transaction fails
  (MANIFEST_BLOB_UNKNOWN): M is never committed. Overflow references are stamped at t,
  before M's transaction commits at t' > t; the stamp protects the link while t >= C,
  i.e. as long as a request lasts less than G, which is why G must be far longer than
  any request (hours, against seconds). Stamps come from the API's clocks and S from the
  collector's: their skew (milliseconds between Lambda hosts) is likewise covered by G.
- *Blob META and object.* The blob phase runs after the link phase has finished. A link
  that existed through the whole link Scan was seen by it (a consistent Scan returns every
  item present from its start to its end): if it survived, it marked META. A link the
  Scan did not see was written after the run started, by an upload or a mount that
  stamped META first (at a time >= S - the request's length > C): META's ``used_ms`` keeps
  it. So BLOB_UNMARKED_AND_UNUSED holds only for a blob no link survives for, and that
  nothing used since C; a later upload or mount of it finds META gone and records a new
  blob (a new object), never a link to the deleted object.
- *Orphans.* An object is deleted only if it is older than C, no META named it when the
  keys were read (after phase 2), and no session names its upload. A blob's object is
  recorded within the request that completed it (or the verifier's run, for direct
  uploads, during which its session exists), so an object older than C with no record
  and no session is no longer on its way to being one.

The one client-visible effect: a client that HEADed a blob (found it linked), then waited
past G while the collector removed it, gets MANIFEST_BLOB_UNKNOWN for its manifest and
must push the blob again — as with any online GC. In tests G is 0, and each request is
atomic with respect to the collector's steps (tests/gc/test_race.py).

Resumption and overlap
----------------------
The run item is taken with a conditional write: a new run only over a finished one
(``RUN_FINISHED_AS_READ``) or none (``NO_RUN_YET``); an unfinished run is continued by the
invocation that finds its lease expired (``RUN_LEASE_FREE``), and progress is saved only
by the lease holder (``RUN_LEASE_HELD``), so two runs never overlap. A continued run keeps
its run id, S and G. In-memory state (the current repository's referenced set, the mark
LRU, the live-key set) is rebuilt by the invocation that needs it.

Dry run
-------
Writes nothing: no run item, no marks, no deletes. Surviving links are remembered in a
``HashSet64`` instead of marked (8 bytes a surviving link), and the report lists what a
real run started now would remove: links, blobs (with bytes), orphan objects. It cannot
know what pushes, mounts and uploads during and after it will use; a real run re-checks
every item under its condition.

Memory
------
Paged scans and queries throughout, no whole-table list. In memory at once: one page,
one repository's referenced set (its distinct references, as Python ints), the mark LRU
(4096 entries), and in phase 3 (and in a dry run, phases 2-3) one 8-byte hash per blob.
bench/gc_memory.py measures it.
"""

from __future__ import annotations

from ..config import parse_duration
from .collector import GarbageCollector, GcRun

__all__ = ["GarbageCollector", "GcRun", "parse_duration"]

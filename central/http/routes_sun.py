"""The SUN endpoints of :mod:`sync.protocol`: provisioning an NTAG 424 DNA, and the SUN
keys of the device's unit's tags with the tag policy (:mod:`central.cases.sun`).

- ``POST /v1/tags/{uid}/provision`` (a provider for its own unit, or an admin: who may
  issue tags) -> :class:`~sync.protocol.ProvisionKeys`; 409 with the reason and what to
  do when the routine's tag lifecycle does not allow it;
- ``POST /v1/tags/{uid}/provisioned`` -> :class:`~sync.protocol.ProvisionedAnswer`; 409
  when the URL does not verify with the new keys;
- ``GET /v1/tag-keys`` (device tokens; principals 403) -> :class:`~sync.protocol.TagKeysPage`.

No answer carries a master key; a tag's five keys go only to who provisions it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from central import senders
from central.http.dependencies import DeviceDep, require_json
from central.http.middleware import require_protocol
from central.http.problems import AUTHED, WITH_BODY, ApiProblem, problem_responses
from central.http.routes_routine import RoutineDep
from sync.protocol import (
    ProvisionedAnswer,
    ProvisionedRequest,
    ProvisionKeys,
    ProvisionRequest,
    TagKeysPage,
)

router = APIRouter(prefix="/v1", dependencies=[Depends(require_protocol)], tags=["sun"])

Uid = Annotated[str, Path(min_length=1, max_length=40, description="the tag's NFC-A UID")]
REFUSED = {**WITH_BODY, **problem_responses(409)}


@router.post("/tags/{uid}/provision", response_model=ProvisionKeys, responses=REFUSED,
             dependencies=[Depends(require_json)])
def provision(uid: Uid, body: ProvisionRequest, actor: DeviceDep,
              routine: RoutineDep) -> ProvisionKeys:
    """The keys to write to the client's NTAG 424 DNA: five new, the five it holds now."""
    return routine.sun.provision(uid, body.client_ref, actor)


@router.post("/tags/{uid}/provisioned", response_model=ProvisionedAnswer, responses=REFUSED,
             dependencies=[Depends(require_json)])
def provisioned(uid: Uid, body: ProvisionedRequest, actor: DeviceDep,
                routine: RoutineDep) -> ProvisionedAnswer:
    """Confirm with the SUN URL the tag read back: it switches to the new keys."""
    return routine.sun.provisioned(uid, body.sun_url, actor)


@router.get("/tag-keys", response_model=TagKeysPage, responses=AUTHED)
def tag_keys(device: DeviceDep, routine: RoutineDep) -> TagKeysPage:
    """SUN keys (SDMMetaRead, SDMFileRead) of the device's unit's tags, and the policy."""
    if not senders.may_push(device):
        raise ApiProblem(403, "forbidden", f"{device.name} is a {device.role} (a principal): "
                         "SUN tag keys are for the agents of field devices",
                         "pull them with a device's token ('nyckelfri-central device add NAME "
                         "--unit UNIT'); principals read the routine's API")
    return routine.sun.tag_keys(device)

"""Importing AfterShip and 17TRACK exports: every documented shape, mapping, rejects, limits.

The fixtures are written by hand from the services' documented field lists (see
``shared/reference/tracking_events.md``); no vendor payload is copied. Line numbers in the
comments are the file's physical lines (the first line is 1).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import pytest

import data.tracking_importers as tracking
from data.tables import read_table
from data.tracking_importers import (
    AFTERSHIP_SUBTAGS,
    AFTERSHIP_TAGS,
    TRACK17_STAGES,
    TRACK17_SUB_STATUSES,
    TrackingImport,
    aftership_milestone,
    import_17track,
    import_aftership,
    read_json_records,
    track17_milestone,
)
from model.errors import InputFileError
from model.events import EVENT_COLUMNS, MILESTONES

# -- AfterShip fixtures -------------------------------------------------------------------------
# A JSON array of tracking objects, pretty-printed.
AFTERSHIP_ARRAY = """\
[
  {
    "tracking_number": "LX100000001CN",
    "slug": "china-post",
    "order_id": "A-1001",
    "order_number": "#1001",
    "checkpoints": [
      {"checkpoint_time": "2026-08-20T10:00:00+08:00", "tag": "InfoReceived",
       "subtag": "InfoReceived_001", "location": "Shenzhen", "message": "Information received"},
      {
        "slug": "china-ems",
        "checkpoint_time": "2026-08-21T09:30:00+08:00",
        "tag": "InTransit",
        "subtag": "InTransit_002",
        "city": "Shenzhen",
        "country_iso3": "CHN",
        "message": "Acceptance"
      },
      {"checkpoint_time": "2026-08-22T08:00:00+08:00", "tag": "InTransit",
       "subtag": "InTransit_001", "message": "In transit"},
      {"checkpoint_time": "2026-08-25T23:10:00", "tag": "InTransit", "subtag": "InTransit_007",
       "location": "Guangzhou", "message": "Departed"},
      {"checkpoint_time": "2026-08-25T23:10:00", "tag": "InTransit", "subtag": "InTransit_007",
       "location": "Guangzhou", "message": "Departed"},
      {"tag": "InTransit", "subtag": "InTransit_004", "message": "Arrived in Brazil"},
      {"checkpoint_time": "2026-09-31T10:00:00-03:00", "tag": "Exception",
       "subtag": "Exception_006", "message": "Aguardando pagamento"}
    ]
  },
  {
    "order_number": "#1002",
    "tracking_number": "RB200000002CN",
    "slug": "correios",
    "checkpoints": [
      {"checkpoint_time": "2026-09-01T12:00:00-03:00", "tag": "InTransit",
       "subtag": "InTransit_006", "location": "Curitiba", "message": "Em fiscalizacao aduaneira"},
      {"checkpoint_time": "2026-09-05T12:00:00-03:00", "tag": "InTransit",
       "subtag": "InTransit_005", "location": "Curitiba"},
      {"checkpoint_time": "2026-09-09T08:00:00-03:00", "tag": "Delivered", "message": "Entregue"}
    ]
  },
  {"tracking_number": "UA300000003CN",
   "checkpoints": [{"checkpoint_time": "2026-09-02", "tag": "Pending"}]},
  {"slug": "yanwen", "checkpoints": [
    {"checkpoint_time": "2026-09-03T10:00:00Z", "tag": "InTransit", "subtag": "InTransit_007"}
  ]},
  {"tracking_number": "UA400000004CN", "order_id": "A-1004", "checkpoints": []}
]
"""

# Line 25 has no checkpoint_time, line 26 a September 31st, line 45 no order key at all.


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def event_rows(result: TrackingImport) -> list[list[object]]:
    return result.events.where(result.events.notna(), None).values.tolist()


def reject_rows(result: TrackingImport) -> list[list[object]]:
    frame = result.rejects.astype(object)
    return frame.where(frame.notna(), None).values.tolist()


def assert_accounted(result: TrackingImport) -> None:
    assert result.checkpoints == (
        len(result.events)
        + result.duplicates
        + sum(result.unmapped.values())
        + result.checkpoint_rejects
    )


def test_aftership_array_events_unmapped_duplicates_and_rejects(tmp_path: Path) -> None:
    result = import_aftership(write(tmp_path, "trackings.json", AFTERSHIP_ARRAY))
    assert list(result.events.columns) == list(EVENT_COLUMNS)
    assert event_rows(result) == [
        [
            "A-1001",
            "2026-08-20T10:00:00+08:00",
            "info_received",
            "china-post",
            "Shenzhen",
            "Information received",
        ],
        # the checkpoint's own slug wins; no location: city and country joined
        [
            "A-1001",
            "2026-08-21T09:30:00+08:00",
            "picked_up",
            "china-ems",
            "Shenzhen, CHN",
            "Acceptance",
        ],
        # no UTC offset given: kept without one
        ["A-1001", "2026-08-25T23:10:00", "departed_origin", "china-post", "Guangzhou", "Departed"],
        # no order_id: order_number
        [
            "#1002",
            "2026-09-01T12:00:00-03:00",
            "customs_hold",
            "correios",
            "Curitiba",
            "Em fiscalizacao aduaneira",
        ],
        ["#1002", "2026-09-05T12:00:00-03:00", "customs_cleared", "correios", "Curitiba", None],
        # no subtag: the tag decides
        ["#1002", "2026-09-09T08:00:00-03:00", "delivered", "correios", None, "Entregue"],
    ]
    assert result.unmapped == {"InTransit_001": 1, "Pending": 1}
    assert result.duplicates == 1
    assert reject_rows(result) == [
        [25, "A-1001", "checkpoint_time", "missing: the checkpoint has no checkpoint_time"],
        [
            26,
            "A-1001",
            "checkpoint_time",
            "'2026-09-31T10:00:00-03:00' is not an ISO 8601 date-time",
        ],
        [
            45,
            None,
            "order_id",
            "missing: the tracking has no order_id, order_number or tracking_number",
        ],
    ]
    assert (result.trackings, result.checkpoints, result.checkpoint_rejects) == (5, 12, 3)
    assert result.notes == ["trackings without checkpoints: 1"]
    assert_accounted(result)


def test_aftership_tracking_number_is_the_last_order_key(tmp_path: Path) -> None:
    body = {
        "tracking_number": "UA3",
        "checkpoints": [{"checkpoint_time": "2026-09-02", "tag": "InfoReceived"}],
    }
    result = import_aftership(write(tmp_path, "one.json", json.dumps(body)))
    assert event_rows(result) == [["UA3", "2026-09-02", "info_received", None, None, None]]


def test_aftership_api_responses_list_and_single(tmp_path: Path) -> None:
    checkpoint = {
        "checkpoint_time": "2026-10-01T09:00:00+02:00",
        "tag": "OutForDelivery",
        "subtag": "OutForDelivery_001",
    }
    listing = {
        "meta": {"code": 200},
        "data": {
            "trackings": [
                {"order_id": "A-1", "slug": "dhl", "checkpoints": [checkpoint]},
                {"order_number": "N-2", "slug": "dpd", "checkpoints": [checkpoint]},
            ]
        },
    }
    result = import_aftership(write(tmp_path, "list.json", json.dumps(listing, indent=2)))
    assert result.events[["order_id", "milestone", "carrier"]].values.tolist() == [
        ["A-1", "out_for_delivery", "dhl"],
        ["N-2", "out_for_delivery", "dpd"],
    ]
    single = {
        "meta": {"code": 200},
        "data": {"tracking": {"order_id": "A-9", "checkpoints": [checkpoint]}},
    }
    result = import_aftership(write(tmp_path, "single.json", json.dumps(single)))
    assert result.events[["order_id", "event_at", "milestone"]].values.tolist() == [
        ["A-9", "2026-10-01T09:00:00+02:00", "out_for_delivery"]
    ]
    # Newer API versions return the tracking itself as data.
    newer = {"meta": {"code": 200}, "data": {"order_id": "A-10", "checkpoints": [checkpoint]}}
    result = import_aftership(write(tmp_path, "newer.json", json.dumps(newer)))
    assert result.events["order_id"].tolist() == ["A-10"]


def webhook(order_id: str, checkpoints: Sequence[Mapping[str, object]]) -> str:
    body = {
        "ts": 1790000000,
        "event": "tracking_update",
        "event_id": f"evt-{order_id}-{len(checkpoints)}",
        "is_tracking_first_tag": False,
        "msg": {
            "order_id": order_id,
            "slug": "cainiao",
            "tag": "InTransit",
            "checkpoints": checkpoints,
        },
    }
    return json.dumps(body)


CP1 = {
    "checkpoint_time": "2026-08-01T08:00:00+08:00",
    "tag": "InTransit",
    "subtag": "InTransit_002",
    "message": "Accepted",
}
CP2 = {
    "checkpoint_time": "2026-08-03T20:00:00+08:00",
    "tag": "InTransit",
    "subtag": "InTransit_007",
    "message": "Departed",
}
CP3 = {
    "checkpoint_time": "2026-08-09T06:00:00-03:00",
    "tag": "InTransit",
    "subtag": "InTransit_004",
    "message": "Arrived",
}


def test_aftership_webhook_json_lines_repeat_checkpoints_count_once(tmp_path: Path) -> None:
    lines = [
        webhook("A-7", [CP1, CP2]),  # 1
        "",  # 2: blank, skipped
        webhook("A-7", [CP1, CP2, CP3]),  # 3: the same tracking again, one checkpoint more
        '{"ts": 1790000001, "msg": {"order_id": "A-8", "checkpoints": [',  # 4: cut short
        '{"hello": "world"}',  # 5: valid JSON, no known shape
        webhook(
            "A-9", [{"tag": "InTransit", "subtag": "InTransit_007", "checkpoint_time": 20260810}]
        ),  # 6
    ]
    path = write(tmp_path, "webhooks.jsonl", "\n".join(lines) + "\n")
    result = import_aftership(path)
    assert result.events[["order_id", "milestone", "carrier"]].values.tolist() == [
        ["A-7", "picked_up", "cainiao"],
        ["A-7", "departed_origin", "cainiao"],
        ["A-7", "arrived_destination", "cainiao"],
    ]
    assert result.duplicates == 2
    assert reject_rows(result) == [
        [
            4,
            None,
            "(record)",
            "not valid JSON: Expecting value (column 63)",
        ],
        [
            5,
            None,
            "(record)",
            "not a tracking, an API response {data: {trackings | tracking}} or a webhook body"
            " {msg: tracking} (no checkpoints, tracking_number, slug, order_id, order_number)",
        ],
        [6, "A-9", "checkpoint_time", "a number, not an ISO 8601 date-time text"],
    ]
    assert (result.checkpoints, result.checkpoint_rejects, result.records_rejected) == (6, 1, 2)
    assert_accounted(result)


def test_a_repeated_bad_checkpoint_is_rejected_once_and_counted_as_a_duplicate(
    tmp_path: Path,
) -> None:
    bad_time = {
        "checkpoint_time": "2026-08-32T10:00:00",
        "tag": "InTransit",
        "subtag": "InTransit_007",
    }
    no_time = {"tag": "Delivered", "message": "Delivered"}
    lines = [webhook("A-1", [CP1, bad_time]), webhook("A-1", [CP1, bad_time, no_time, CP2])]
    lines.append(webhook("A-1", [CP1, bad_time, no_time, CP2]))
    result = import_aftership(write(tmp_path, "webhooks.jsonl", "\n".join(lines)))
    assert result.events["milestone"].tolist() == ["picked_up", "departed_origin"]
    assert reject_rows(result) == [
        [1, "A-1", "checkpoint_time", "'2026-08-32T10:00:00' is not an ISO 8601 date-time"],
        [2, "A-1", "checkpoint_time", "missing: the checkpoint has no checkpoint_time"],
    ]
    assert (result.checkpoints, result.duplicates) == (10, 6)
    assert_accounted(result)


def test_aftership_api_error_response_and_wrong_service_are_one_line_errors(tmp_path: Path) -> None:
    error = {"meta": {"code": 4004, "message": "Tracking does not exist."}, "data": {}}
    path = write(tmp_path, "error.json", json.dumps(error))
    with pytest.raises(InputFileError) as caught:
        import_aftership(path)
    assert str(caught.value) == (
        f"{path}: AfterShip error response (meta.code 4004: Tracking does not exist.)"
    )
    path = write(tmp_path, "push.json", json.dumps(push("A-1", [EV_DEPARTED])))
    with pytest.raises(InputFileError) as caught:
        import_aftership(path)
    assert str(caught.value) == f"{path}: a 17TRACK record, not AfterShip: use `import 17track`"


def test_aftership_mapping_follows_the_brief() -> None:
    expected = {
        "InTransit_001": None,
        "InTransit_002": "picked_up",
        "InTransit_004": "arrived_destination",
        "InTransit_005": "customs_cleared",
        "InTransit_006": "customs_hold",
        "InTransit_007": "departed_origin",
        "Exception_004": "customs_hold",
        "Exception_010": "returning",
        "Exception_011": "returned",
        "Exception_013": "lost",
    }
    assert {subtag: AFTERSHIP_SUBTAGS[subtag] for subtag in expected} == expected
    # Every documented sub-tag has an entry (an explicit None for "no milestone").
    documented = (
        [f"InTransit_{i:03d}" for i in range(1, 10)]
        + [f"Exception_{i:03d}" for i in (*range(1, 14), *range(16, 22))]
        + [f"AttemptFail_{i:03d}" for i in (1, 2, 3)]
        + [f"OutForDelivery_{i:03d}" for i in (1, 3, 4)]
        + [f"Delivered_{i:03d}" for i in range(1, 6)]
        + ["AvailableForPickup_001", "InfoReceived_001", "Pending_001", "Expired_001"]
    )
    assert sorted(documented) == sorted(AFTERSHIP_SUBTAGS)
    tags = ["Pending", "InfoReceived", "InTransit", "OutForDelivery", "AttemptFail"]
    tags += ["Delivered", "AvailableForPickup", "Exception", "Expired"]
    assert sorted(tags) == sorted(AFTERSHIP_TAGS)
    # A sub-tag newer than the table falls back to its tag; an unknown tag maps to nothing.
    assert aftership_milestone("Exception", "Exception_099") == "exception"
    assert aftership_milestone("InTransit", "InTransit_099") is None
    assert aftership_milestone("Teleported", None) is None
    assert aftership_milestone(None, None) is None


def test_every_table_maps_to_the_milestone_vocabulary() -> None:
    for table in (AFTERSHIP_TAGS, AFTERSHIP_SUBTAGS, TRACK17_SUB_STATUSES, TRACK17_STAGES):
        assert {m for m in table.values() if m is not None} <= set(MILESTONES)


# -- 17TRACK fixtures -------------------------------------------------------------------------
EV_PICKED = {
    "time_iso": "2026-08-02T10:00:00+08:00",
    "time_utc": "2026-08-02T02:00:00Z",
    "description": "Collected by the carrier",
    "location": "Yiwu",
    "stage": "PickedUp",
    "sub_status": "InTransit_PickedUp",
}
EV_DEPARTED = {
    "time_iso": "2026-08-04T22:00:00+08:00",
    "time_utc": "2026-08-04T14:00:00Z",
    "description": "Departed from the origin port",
    "location": "",
    "stage": "Departure",
    "sub_status": "InTransit_Other",
    "address": {"country": "CN", "state": "Zhejiang", "city": "Hangzhou"},
}
EV_OTHER = {
    "time_iso": "2026-08-06T03:00:00+08:00",
    "time_utc": "2026-08-05T19:00:00Z",
    "description": "In transit",
    "stage": None,
    "sub_status": "InTransit_Other",
}
EV_UTC_ONLY = {
    "time_iso": None,
    "time_utc": "2026-08-12T15:00:00Z",
    "description": "Customs clearance completed",
    "sub_status": "InTransit_CustomsReleased",
}


def track_info(events: Sequence[Mapping[str, object]]) -> dict[str, object]:
    return {
        "latest_status": {"status": "InTransit", "sub_status": "InTransit_Other"},
        "milestone": [{"key_stage": "PickedUp", "time_iso": None, "time_utc": None}],
        "tracking": {
            "providers": [{"provider": {"key": 3011, "name": "China Post"}, "events": events}]
        },
    }


def push(number: str, events: Sequence[Mapping[str, object]], tag: str = "") -> dict[str, object]:
    return {
        "event": "TRACKING_UPDATED",
        "data": {"number": number, "carrier": 3011, "tag": tag, "track_info": track_info(events)},
    }


# One push, pretty-printed: its events open on lines 19, 22, 24, 31, 37, 45 and 47.
TRACK17_PUSH = """\
{
  "event": "TRACKING_UPDATED",
  "data": {
    "number": "RR500000005CN",
    "carrier": 3011,
    "tag": "B-2001",
    "track_info": {
      "latest_status": {"status": "InTransit", "sub_status": "InTransit_CustomsProcessing"},
      "time_metrics": {"days_after_order": 9, "days_of_transit": 8, "days_after_last_update": 1},
      "milestone": [
        {"key_stage": "InfoReceived", "time_iso": "2026-08-01T09:00:00+08:00",
         "time_utc": "2026-08-01T01:00:00Z"}
      ],
      "tracking": {
        "providers": [
          {
            "provider": {"key": 3011, "name": "China Post", "country": "CN"},
            "events": [
              {"time_iso": "2026-08-01T09:00:00+08:00", "time_utc": "2026-08-01T01:00:00Z",
               "description": "Order information received", "location": "Shenzhen",
               "stage": "InfoReceived", "sub_status": "InfoReceived"},
              {"time_iso": "2026-08-03T09:00:00+08:00", "description": "Departed",
               "location": "Shenzhen", "stage": "Departure", "sub_status": "InTransit_Departure"},
              {
                "time_iso": "not a time",
                "time_utc": "2026-08-05T01:00:00Z",
                "description": "Bad clock",
                "stage": "",
                "sub_status": "InTransit_Other"
              },
              {"description": "No time at all", "sub_status": "InTransit_Arrival"}
            ]
          },
          {
            "provider": {"key": 2151, "name": "Correios"},
            "events": [
              {
                "time_iso": "2026-08-10T11:00:00-03:00",
                "time_utc": "2026-08-10T14:00:00Z",
                "description": "Objeto recebido pelos Correios do Brasil",
                "location": "Curitiba",
                "stage": "Arrival",
                "sub_status": "InTransit_Arrival"
              },
              {"time_iso": "2026-08-11T11:00:00-03:00", "description": "Em fiscalizacao",
               "sub_status": "InTransit_CustomsProcessing"},
              {"time_iso": "2026-08-12T11:00:00-03:00", "description": "Sem status"}
            ]
          }
        ]
      }
    }
  }
}
"""


def test_17track_single_push_pretty_printed(tmp_path: Path) -> None:
    result = import_17track(write(tmp_path, "push.json", TRACK17_PUSH))
    assert event_rows(result) == [
        [
            "B-2001",
            "2026-08-01T09:00:00+08:00",
            "info_received",
            "China Post",
            "Shenzhen",
            "Order information received",
        ],
        [
            "B-2001",
            "2026-08-03T09:00:00+08:00",
            "departed_origin",
            "China Post",
            "Shenzhen",
            "Departed",
        ],
        [
            "B-2001",
            "2026-08-10T11:00:00-03:00",
            "arrived_destination",
            "Correios",
            "Curitiba",
            "Objeto recebido pelos Correios do Brasil",
        ],
        [
            "B-2001",
            "2026-08-11T11:00:00-03:00",
            "customs_hold",
            "Correios",
            None,
            "Em fiscalizacao",
        ],
    ]
    assert result.unmapped == {"(no status)": 1}
    assert reject_rows(result) == [
        # time_iso is preferred: when it is there it must be right (time_utc is not used)
        [24, "B-2001", "time_iso", "'not a time' is not an ISO 8601 date-time"],
        [31, "B-2001", "time_iso", "missing: the event has no time_iso or time_utc"],
    ]
    assert (result.trackings, result.checkpoints) == (1, 7)
    assert_accounted(result)


def test_17track_array_of_pushes_stage_fallback_utc_and_number(tmp_path: Path) -> None:
    pushes = [
        push("RR1", [EV_PICKED, EV_DEPARTED, EV_OTHER], tag="B-1"),
        push("RR2", [EV_UTC_ONLY]),  # no tag: the number is the order
        push("RR3", []),
    ]
    result = import_17track(write(tmp_path, "pushes.json", json.dumps(pushes, indent=1)))
    assert event_rows(result) == [
        [
            "B-1",
            "2026-08-02T10:00:00+08:00",
            "picked_up",
            "China Post",
            "Yiwu",
            "Collected by the carrier",
        ],
        # sub_status InTransit_Other has no milestone: the stage gives departed_origin;
        # an empty location: the address joined
        [
            "B-1",
            "2026-08-04T22:00:00+08:00",
            "departed_origin",
            "China Post",
            "Hangzhou, Zhejiang, CN",
            "Departed from the origin port",
        ],
        [
            "RR2",
            "2026-08-12T15:00:00Z",
            "customs_cleared",
            "China Post",
            None,
            "Customs clearance completed",
        ],
    ]
    assert result.unmapped == {"InTransit_Other": 1}
    assert result.rejects.empty
    assert result.notes == ["trackings without checkpoints: 1"]
    assert (result.trackings, result.checkpoints) == (3, 4)


def test_17track_json_lines_of_pushes(tmp_path: Path) -> None:
    lines = [
        json.dumps(push("RR1", [EV_PICKED], tag="B-1")),  # 1
        json.dumps(push("RR1", [EV_PICKED, EV_DEPARTED], tag="B-1")),  # 2: repeats EV_PICKED
        json.dumps(
            {
                "event": "TRACKING_UPDATED",
                "data": {"track_info": {"tracking": {"providers": [{"events": [EV_PICKED]}]}}},
            }
        ),  # 3
        "[" + json.dumps(push("RR4", [EV_UTC_ONLY], tag="B-4")) + "]",  # 4: an array on one line
        "{not json}",  # 5
    ]
    result = import_17track(write(tmp_path, "pushes.jsonl", "\r\n".join(lines) + "\r\n"))
    assert result.events[["order_id", "milestone", "carrier"]].values.tolist() == [
        ["B-1", "picked_up", "China Post"],
        ["B-1", "departed_origin", "China Post"],
        ["B-4", "customs_cleared", "China Post"],
    ]
    assert result.duplicates == 1
    assert reject_rows(result) == [
        [3, None, "tag", "missing: the tracking entry has no tag or number"],
        [
            5,
            None,
            "(record)",
            "not valid JSON: Expecting property name enclosed in double quotes (column 2)",
        ],
    ]
    assert_accounted(result)


def test_17track_gettrackinfo_response(tmp_path: Path) -> None:
    response = {
        "code": 0,
        "data": {
            "accepted": [
                {
                    "number": "RR1",
                    "carrier": 3011,
                    "tag": "B-1",
                    "track_info": track_info([EV_PICKED]),
                },
                {"number": "RR2", "carrier": 3011, "track_info": None},
                {"number": "RR3", "track_info": {"tracking": {"providers": "China Post"}}},
            ],
            "rejected": [
                {
                    "number": "RR404",
                    "error": {
                        "code": -18019902,
                        "message": "The tracking number 'RR404' is not registered",
                    },
                }
            ],
        },
    }
    result = import_17track(write(tmp_path, "info.json", json.dumps(response, indent=2)))
    assert event_rows(result) == [
        [
            "B-1",
            "2026-08-02T10:00:00+08:00",
            "picked_up",
            "China Post",
            "Yiwu",
            "Collected by the carrier",
        ]
    ]
    assert result.notes == [
        "trackings without checkpoints: 1",
        "numbers 17TRACK did not track (no events): 1"
        " (RR404: The tracking number 'RR404' is not registered)",
    ]
    # The third accepted entry opens on line 48 of the pretty-printed response.
    assert reject_rows(result) == [[48, "RR3", "(record)", "providers is text, not an array"]]
    error = write(tmp_path, "error.json", json.dumps({"code": -18010002, "data": {"errors": []}}))
    with pytest.raises(InputFileError) as caught:
        import_17track(error)
    assert str(caught.value) == f"{error}: 17TRACK error response (code -18010002)"


def test_17track_mapping_and_stage_fallback() -> None:
    assert track17_milestone("InTransit_CustomsProcessing", None) == "customs_hold"
    assert track17_milestone("InTransit_CustomsReleased", "") == "customs_cleared"
    assert track17_milestone("Exception_Lost", None) == "lost"
    assert track17_milestone("InTransit_Other", "Arrival") == "arrived_destination"
    assert track17_milestone(None, "Delivered") == "delivered"
    assert track17_milestone("NoSuchStatus", "Returning") == "returning"
    assert track17_milestone("InTransit_Other", None) is None
    assert len(TRACK17_SUB_STATUSES) == 30  # the documented count


# -- reading: shapes, limits, hostile input -----------------------------------------------------
def test_malformed_document_is_one_error_naming_the_place(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.json", '[\n  {"order_id": "A-1",\n   "checkpoints": [}\n]\n')
    with pytest.raises(InputFileError) as caught:
        import_aftership(path)
    assert str(caught.value) == f"{path}: not valid JSON: Expecting value (line 3, column 20)"


def test_empty_missing_and_non_utf8_files(tmp_path: Path) -> None:
    empty = write(tmp_path, "empty.json", "\n  \n")
    with pytest.raises(InputFileError, match="empty file"):
        import_aftership(empty)
    with pytest.raises(InputFileError, match="no such file"):
        import_17track(tmp_path / "nope.json")
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'[{"order_id": "S\xe3o", "checkpoints": []}]')
    with pytest.raises(InputFileError) as caught:
        import_aftership(latin)
    assert str(caught.value) == f"{latin}: not UTF-8 text (byte 17)"


def test_nan_is_not_json(tmp_path: Path) -> None:
    path = write(tmp_path, "nan.json", '[{"order_id": "A-1", "weight": NaN, "checkpoints": []}]')
    with pytest.raises(InputFileError) as caught:
        import_aftership(path)
    assert str(caught.value) == f"{path}: not valid JSON: NaN is not valid JSON"


def test_deep_nesting_is_refused_before_parsing(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    path = write(tmp_path, "deep.json", deep)
    with pytest.raises(InputFileError) as caught:
        import_aftership(path)
    assert str(caught.value) == f"{path}: nested deeper than 64 levels"
    lines = [webhook("A-1", [CP1]), "[" * 65 + "]" * 65, webhook("A-2", [CP2])]
    result = import_aftership(write(tmp_path, "deep.jsonl", "\n".join(lines)))
    assert reject_rows(result) == [[2, None, "(record)", "nested deeper than 64 levels"]]
    assert result.events["order_id"].tolist() == ["A-1", "A-2"]


def test_size_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracking, "MAX_DOCUMENT_BYTES", 2**20)
    big = write(tmp_path, "big.json", AFTERSHIP_ARRAY + " " * 2**20)
    with pytest.raises(InputFileError) as caught:
        import_aftership(big)
    assert str(caught.value) == (
        f"{big}: a JSON document larger than 1 MiB; export it as JSON Lines"
        " (one tracking or push body per line) instead"
    )
    monkeypatch.setattr(tracking, "MAX_RECORD_BYTES", 400)
    long_line = webhook("A-2", [CP1, CP2, CP3])
    assert len(long_line) > 400
    path = write(
        tmp_path, "long.jsonl", "\n".join([webhook("A-1", [CP1]), long_line, webhook("A-3", [CP2])])
    )
    result = import_aftership(path)
    assert reject_rows(result) == [[2, None, "(record)", "line longer than 400 bytes"]]
    assert result.events["order_id"].tolist() == ["A-1", "A-3"]


def test_gzip_input_and_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8-sig") as handle:
        handle.write(webhook("A-1", [CP1]) + "\n" + webhook("A-2", [CP2]) + "\n")
    kind, _ = read_json_records(path)
    assert kind == "json-lines"
    assert import_aftership(path).events["order_id"].tolist() == ["A-1", "A-2"]


def test_detection_document_vs_json_lines(tmp_path: Path) -> None:
    one_line = write(tmp_path, "one.json", webhook("A-1", [CP1]))
    assert read_json_records(one_line)[0] == "document"
    pretty = write(tmp_path, "pretty.json", AFTERSHIP_ARRAY)
    assert read_json_records(pretty)[0] == "document"
    lines = write(tmp_path, "lines.json", webhook("A-1", [CP1]) + "\n\n" + webhook("A-2", [CP2]))
    kind, records = read_json_records(lines)
    assert kind == "json-lines"
    assert [record.line for record in records] == [1, 3]


def test_duplicate_keys_keep_line_numbers_right(tmp_path: Path) -> None:
    # The first "checkpoints" value is dropped by the JSON parser (the last one wins), but
    # its objects still count for the line numbers of those after it.
    text = (
        '{"order_id": "A-1",\n'
        ' "checkpoints": [{"checkpoint_time": "2026-01-01", "tag": "Delivered"}],\n'
        ' "checkpoints": [\n'
        '   {"checkpoint_time": "2026-01-02", "tag": "InfoReceived"},\n'
        '   {"checkpoint_time": "yesterday", "tag": "Delivered"}\n'
        " ]}\n"
    )
    result = import_aftership(write(tmp_path, "dup.json", text))
    assert result.events["event_at"].tolist() == ["2026-01-02"]
    assert reject_rows(result) == [
        [5, "A-1", "checkpoint_time", "'yesterday' is not an ISO 8601 date-time"]
    ]


def test_dates_out_of_range_and_wrong_types(tmp_path: Path) -> None:
    body = {
        "order_id": "A-1",
        "checkpoints": [
            {"checkpoint_time": "1850-05-01T00:00:00", "tag": "Delivered"},
            {"checkpoint_time": {"at": "2026-01-01"}, "tag": "Delivered"},
            "not a checkpoint",
            {"checkpoint_time": "2026-05-01T00:00:00+14:00", "tag": "Delivered", "message": ["x"]},
        ],
    }
    result = import_aftership(write(tmp_path, "types.json", json.dumps(body)))
    assert reject_rows(result) == [
        [
            1,
            "A-1",
            "checkpoint_time",
            "'1850-05-01T00:00:00' is out of the supported range 1900-01-01 to 2199-12-31",
        ],
        [1, "A-1", "checkpoint_time", "an object, not an ISO 8601 date-time text"],
        [1, "A-1", "checkpoints", "text, not a checkpoint"],
    ]
    # A description that is not text is left empty.
    assert event_rows(result) == [
        ["A-1", "2026-05-01T00:00:00+14:00", "delivered", None, None, None]
    ]


def test_written_events_round_trip_with_exactly_the_events_columns(tmp_path: Path) -> None:
    result = import_aftership(write(tmp_path, "trackings.json", AFTERSHIP_ARRAY))
    for name in ("events.csv", "events.csv.gz", "events.parquet"):
        out = tmp_path / name
        tracking.write_tracking_import(result, out)
        written = read_table(out)
        assert list(written.columns) == list(EVENT_COLUMNS)
        assert written["milestone"].isin(MILESTONES).all()
        pd.testing.assert_frame_equal(
            written.astype(object).where(written.notna(), None),
            result.events.astype(object).where(result.events.notna(), None),
            check_dtype=False,
        )
    rejects = pd.read_csv(tmp_path / "events.rejects.csv")
    assert rejects.columns.tolist() == ["line", "order_id", "column", "reason"]
    assert rejects["line"].tolist() == [25, 26, 45]


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_table(heading: str) -> dict[str, dict[str, str | None]]:
    """Column -> {status: milestone} of the README table under ``heading``."""
    text = README.read_text(encoding="utf-8").split(heading + "\n", 1)[1]
    rows = text.lstrip("\n").split("\n\n", 1)[0].splitlines()
    header = [cell.strip().strip("`") for cell in rows[0].strip("|").split("|")]
    tables: dict[str, dict[str, str | None]] = {name: {} for name in header[1:]}
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        milestone = None if cells[0].startswith("*none") else cells[0].strip("`")
        for name, cell in zip(header[1:], cells[1:], strict=True):
            for code in re.findall(r"`([^`]+)`", cell):
                tables[name][code] = milestone
    return tables


def test_readme_tables_are_the_code_tables() -> None:
    aftership = readme_table("### AfterShip statuses → milestones")
    assert aftership["subtag"] == AFTERSHIP_SUBTAGS
    assert aftership["tag` (no sub-tag, or one not listed)"] == AFTERSHIP_TAGS
    track17 = readme_table("### 17TRACK statuses → milestones")
    assert track17["sub_status"] == TRACK17_SUB_STATUSES
    assert track17["stage` (no sub-status, or one without a milestone)"] == TRACK17_STAGES

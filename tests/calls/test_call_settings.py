"""Built-in call types, deep merging and settings validation (calls/call_settings.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from calls.call_settings import (
    BUILTIN_CALL_TYPE_SETTINGS,
    BUILTIN_NOTIFICATION_SETTINGS,
    NOTIFICATION_EVENTS,
    SECTIONS,
    SettingsError,
    builtin_call_type_settings,
    deep_merge,
    default_notification_settings,
    effective,
    overlay,
    validate_call_type_settings,
    validate_notification_settings,
    validate_settings_request,
)

STREAM_TYPES = ("default", "audio_room", "livestream", "development")
ALL_TYPES = (*STREAM_TYPES, "appointment")


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _strip_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_strip_none(item) for item in value]
    return value


# --------------------------------------------------------------------------------------------
# deep_merge / effective
# --------------------------------------------------------------------------------------------


def test_partial_override_changes_only_what_it_names():
    base = builtin_call_type_settings("default")

    merged = deep_merge(base, {"ring": {"auto_cancel_timeout_ms": 30_000}})

    assert merged["ring"] == {
        "auto_cancel_timeout_ms": 30_000,
        "incoming_call_timeout_ms": 15_000,
        "missed_call_timeout_ms": 15_000,
    }
    assert {key: value for key, value in merged.items() if key != "ring"} == {
        key: value for key, value in base.items() if key != "ring"
    }


def test_deep_merge_does_not_mutate_inputs():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    override = {"a": {"b": 2, "e": {"f": None}}, "d": None}
    base_before, override_before = copy.deepcopy(base), copy.deepcopy(override)

    merged = deep_merge(base, override)

    assert base == base_before
    assert override == override_before
    assert merged == {"a": {"b": 2, "c": [1, 2], "e": {}}, "d": 1}


def test_deep_merge_result_shares_nothing_mutable_with_its_inputs():
    base = {"limits": {"max_participants_exclude_roles": ["admin"]}, "x": {"y": 1}}
    override = {"geofencing": {"names": ["india"]}}

    merged = deep_merge(base, override)
    merged["limits"]["max_participants_exclude_roles"].append("host")
    merged["x"]["y"] = 2
    merged["geofencing"]["names"].append("canada")

    assert base == {"limits": {"max_participants_exclude_roles": ["admin"]}, "x": {"y": 1}}
    assert override == {"geofencing": {"names": ["india"]}}


def test_deep_merge_ignores_none_at_every_depth():
    base = {"ring": {"auto_cancel_timeout_ms": 15_000}, "session": {"x": 1}}

    merged = deep_merge(base, {"ring": {"auto_cancel_timeout_ms": None}, "session": None})

    assert merged == base


def test_deep_merge_replaces_lists_instead_of_concatenating():
    base = {"broadcasting": {"hls": {"quality_tracks": ["720p"], "enabled": True}}}

    merged = deep_merge(base, {"broadcasting": {"hls": {"quality_tracks": ["360p", "1080p"]}}})

    assert merged == {
        "broadcasting": {"hls": {"quality_tracks": ["360p", "1080p"], "enabled": True}}
    }


def test_deep_merge_lets_a_dict_replace_a_scalar_and_strips_its_nones():
    merged = deep_merge({"a": 1}, {"a": {"b": None, "c": 2}, "new": {"d": None}})

    assert merged == {"a": {"c": 2}, "new": {}}


def test_deep_merge_lets_a_scalar_replace_a_dict():
    assert deep_merge({"a": {"b": 1}}, {"a": False}) == {"a": False}


def test_overlay_equals_deep_merge_and_leaves_inputs_alone():
    base = builtin_call_type_settings("default")
    override = {
        "ring": {"auto_cancel_timeout_ms": 30_000, "missed_call_timeout_ms": None},
        "backstage": {"enabled": True},
        "geofencing": {"names": ["india"]},
    }
    before = copy.deepcopy(base)

    result = overlay(base, override)

    assert result == deep_merge(base, override)
    assert base == before
    assert result["audio"] is base["audio"]  # unchanged subtrees are shared, not copied
    assert overlay(base, {}) is base


def _call(override):
    from calls.models import Call, CallType

    call_type = CallType(name="appointment", settings=BUILTIN_CALL_TYPE_SETTINGS["appointment"])
    return Call(type=call_type, settings_override=override)


def test_effective_settings_without_override_are_the_types():
    call = _call({})

    assert effective(call) == BUILTIN_CALL_TYPE_SETTINGS["appointment"]


def test_effective_settings_merge_the_override_once_per_settings_objects():
    call = _call(
        {"backstage": {"join_ahead_time_seconds": 300}, "limits": {"max_duration_seconds": 5400}}
    )

    settings = effective(call)
    assert settings["backstage"] == {"enabled": True, "join_ahead_time_seconds": 300}
    assert settings["limits"]["max_duration_seconds"] == 5400
    assert settings["limits"]["max_participants"] == 4
    assert effective(call) is settings  # computed once
    call.settings_override = {"limits": {"max_duration_seconds": 60}}
    assert effective(call)["limits"]["max_duration_seconds"] == 60  # a new override: again


# --------------------------------------------------------------------------------------------
# Built-in call types
# --------------------------------------------------------------------------------------------


def test_sections_are_the_seventeen_response_sections():
    assert set(SECTIONS) == {
        "audio", "video", "backstage", "ring", "limits", "session", "screensharing",
        "recording", "broadcasting", "transcription", "geofencing", "thumbnails",
        "frame_recording", "individual_recording", "raw_recording", "encryption", "ingress",
    }  # fmt: skip
    assert len(SECTIONS) == 17


def test_builtin_types_are_the_four_stream_types_plus_appointment():
    assert set(BUILTIN_CALL_TYPE_SETTINGS) == set(ALL_TYPES)


@pytest.mark.parametrize("call_type", ALL_TYPES)
def test_every_builtin_type_has_every_section(call_type):
    assert tuple(BUILTIN_CALL_TYPE_SETTINGS[call_type]) == SECTIONS


@pytest.mark.parametrize("call_type", ALL_TYPES)
def test_builtin_settings_decode_with_the_stream_sdk_without_losing_fields(call_type):
    models = pytest.importorskip("getstream.models")
    settings = BUILTIN_CALL_TYPE_SETTINGS[call_type]

    decoded = models.CallSettingsResponse.from_dict(settings)

    assert _strip_none(decoded.to_dict()) == settings


@pytest.mark.parametrize(
    ("call_type", "expected"),
    [
        (
            "default",
            {
                "backstage": False,
                "mic": (True, "earpiece"),
                "audio_access_request": True,
                "video": (True, True),
                "resolution": {"width": 2560, "height": 1440, "bitrate": 5_000_000},
                "screenshare": (True, True),
                "ring": (15_000, 15_000, 15_000),
            },
        ),
        (
            "audio_room",
            {
                "backstage": True,
                "mic": (False, "speaker"),
                "audio_access_request": True,
                "video": (False, False),
                "resolution": {"width": 2560, "height": 1440, "bitrate": 5_000_000},
                "screenshare": (False, False),
                "ring": (0, 0, 0),
            },
        ),
        (
            "livestream",
            {
                "backstage": True,
                "mic": (False, "speaker"),
                "audio_access_request": False,
                "video": (True, True),
                "resolution": {"width": 1920, "height": 1080, "bitrate": 3_000_000},
                "screenshare": (True, False),
                "ring": (0, 0, 0),
            },
        ),
        (
            "development",
            {
                "backstage": False,
                "mic": (True, "earpiece"),
                "audio_access_request": True,
                "video": (True, True),
                "resolution": {"width": 1920, "height": 1080, "bitrate": 3_000_000},
                "screenshare": (True, True),
                "ring": (15_000, 15_000, 15_000),
            },
        ),
    ],
)
def test_stream_builtin_types_follow_the_documented_table(call_type, expected):
    settings = BUILTIN_CALL_TYPE_SETTINGS[call_type]
    audio, video, ring = settings["audio"], settings["video"], settings["ring"]

    assert settings["backstage"] == {"enabled": expected["backstage"], "join_ahead_time_seconds": 0}
    assert (audio["mic_default_on"], audio["default_device"]) == expected["mic"]
    assert audio["access_request_enabled"] is expected["audio_access_request"]
    assert (video["enabled"], video["camera_default_on"]) == expected["video"]
    assert video["target_resolution"] == expected["resolution"]
    assert (
        settings["screensharing"]["enabled"],
        settings["screensharing"]["access_request_enabled"],
    ) == expected["screenshare"]
    assert (
        ring["incoming_call_timeout_ms"],
        ring["auto_cancel_timeout_ms"],
        ring["missed_call_timeout_ms"],
    ) == expected["ring"]


@pytest.mark.parametrize("call_type", STREAM_TYPES)
def test_stream_builtin_types_share_recording_broadcast_transcription_and_limits(call_type):
    settings = BUILTIN_CALL_TYPE_SETTINGS[call_type]

    assert settings["recording"]["mode"] == "available"
    assert settings["recording"]["quality"] == "720p"
    assert settings["broadcasting"]["enabled"] is True
    assert settings["broadcasting"]["hls"]["auto_on"] is False
    assert settings["broadcasting"]["hls"]["quality_tracks"] == ["720p"]
    assert settings["transcription"]["mode"] == "available"
    assert settings["geofencing"] == {"names": []}
    assert settings["session"] == {"inactivity_timeout_seconds": 30}
    assert settings["limits"] == {
        "max_participants": 100,
        "max_duration_seconds": 0,
        "max_participants_exclude_owner": False,
        "max_participants_exclude_roles": [],
    }


def test_appointment_type_values():
    settings = BUILTIN_CALL_TYPE_SETTINGS["appointment"]

    assert settings["backstage"] == {"enabled": True, "join_ahead_time_seconds": 600}
    assert settings["limits"]["max_participants"] == 4
    assert settings["limits"]["max_duration_seconds"] == 3600
    assert settings["video"]["enabled"] is True
    assert settings["video"]["camera_default_on"] is True
    assert settings["ring"] == {
        "auto_cancel_timeout_ms": 15_000,
        "incoming_call_timeout_ms": 15_000,
        "missed_call_timeout_ms": 15_000,
    }
    # Nothing copies a consultation off the media path by default.
    assert settings["recording"]["mode"] == "disabled"
    assert settings["transcription"]["mode"] == "disabled"
    assert settings["transcription"]["closed_caption_mode"] == "disabled"
    assert settings["thumbnails"] == {"enabled": False}
    assert settings["broadcasting"]["enabled"] is False
    assert settings["broadcasting"]["hls"]["enabled"] is False


@pytest.mark.parametrize("call_type", ["default", "development", "appointment"])
def test_builtin_settings_pass_request_validation(call_type):
    settings = BUILTIN_CALL_TYPE_SETTINGS[call_type]

    assert validate_call_type_settings(settings) == settings


@pytest.mark.parametrize("call_type", ["audio_room", "livestream"])
def test_zero_ring_defaults_are_below_the_request_minimum(call_type):
    # Stream's own defaults break the request bounds; only the ring section does.
    with pytest.raises(SettingsError) as excinfo:
        validate_call_type_settings(BUILTIN_CALL_TYPE_SETTINGS[call_type])

    assert set(excinfo.value.errors) == {
        "settings.ring.auto_cancel_timeout_ms",
        "settings.ring.incoming_call_timeout_ms",
        "settings.ring.missed_call_timeout_ms",
    }


def test_builtin_call_type_settings_returns_a_private_copy():
    copied = builtin_call_type_settings("appointment")
    copied["limits"]["max_participants"] = 99

    assert BUILTIN_CALL_TYPE_SETTINGS["appointment"]["limits"]["max_participants"] == 4
    with pytest.raises(KeyError):
        builtin_call_type_settings("nope")


# --------------------------------------------------------------------------------------------
# Notification settings
# --------------------------------------------------------------------------------------------


def test_default_notification_settings_shape():
    settings = default_notification_settings()

    assert set(settings) == {"enabled", *NOTIFICATION_EVENTS}
    assert settings["enabled"] is True
    assert settings["call_ring"]["enabled"] is True
    assert settings["call_ring"]["apns"]["title"] == "Incoming call"
    for event in NOTIFICATION_EVENTS:
        assert set(settings[event]) == {"enabled", "apns", "fcm"}
        assert isinstance(settings[event]["enabled"], bool)
        assert set(settings[event]["apns"]) == {"title", "body"}
        assert settings[event]["apns"]["title"]
        assert settings[event]["apns"]["body"]
        assert settings[event]["fcm"] == {"data": {}}


def test_notification_texts_carry_no_templates():
    for event in NOTIFICATION_EVENTS:
        apns = BUILTIN_NOTIFICATION_SETTINGS[event]["apns"]
        assert "{{" not in apns["title"] + apns["body"]


def test_default_notification_settings_returns_a_private_copy():
    copied = default_notification_settings()
    copied["call_ring"]["apns"]["title"] = "changed"

    assert BUILTIN_NOTIFICATION_SETTINGS["call_ring"]["apns"]["title"] == "Incoming call"


def test_notification_settings_decode_with_the_stream_sdk():
    models = pytest.importorskip("getstream.models")

    decoded = models.NotificationSettings.from_dict(BUILTIN_NOTIFICATION_SETTINGS)

    assert _strip_none(decoded.to_dict()) == BUILTIN_NOTIFICATION_SETTINGS


def test_validate_notification_settings():
    assert validate_notification_settings(BUILTIN_NOTIFICATION_SETTINGS) == (
        BUILTIN_NOTIFICATION_SETTINGS
    )
    partial = {"call_ring": {"apns": {"sound": "ring.caf", "mutable-content": 1}}}
    assert validate_notification_settings(partial) == partial

    with pytest.raises(SettingsError) as excinfo:
        validate_notification_settings(
            {"call_rang": {}, "call_missed": {"enabled": 1, "apns": {"title": 3}}}
        )
    assert excinfo.value.errors == {
        "notification_settings.call_rang": "unknown field",
        "notification_settings.call_missed.enabled": "must be a boolean",
        "notification_settings.call_missed.apns.title": "must be a string",
    }


# --------------------------------------------------------------------------------------------
# Validation: accepted input
# --------------------------------------------------------------------------------------------


def test_partial_override_changing_one_field_is_accepted():
    # The spec requires incoming_call_timeout_ms whenever ring is sent; we are lenient.
    assert validate_settings_request({"ring": {"auto_cancel_timeout_ms": 30_000}}) == {
        "ring": {"auto_cancel_timeout_ms": 30_000}
    }


def test_validation_drops_none_values_and_returns_a_copy():
    data = {
        "backstage": {"enabled": True, "join_ahead_time_seconds": None},
        "ring": None,
        "limits": {"max_participants_exclude_roles": ["admin"]},
    }
    before = copy.deepcopy(data)

    cleaned = validate_settings_request(data)

    assert cleaned == {
        "backstage": {"enabled": True},
        "limits": {"max_participants_exclude_roles": ["admin"]},
    }
    assert data == before
    cleaned["limits"]["max_participants_exclude_roles"].append("host")
    assert data["limits"]["max_participants_exclude_roles"] == ["admin"]


def test_sdk_shaped_override_is_accepted():
    data = {
        "backstage": {"enabled": True, "join_ahead_time_seconds": 600},
        "ring": {"auto_cancel_timeout_ms": 30_000, "incoming_call_timeout_ms": 20_000},
        "audio": {"default_device": "speaker", "noise_cancellation": {"mode": "auto-on"}},
        "video": {"camera_facing": "external", "target_resolution": {"width": 240, "height": 3840}},
        "recording": {
            "mode": "auto-on",
            "quality": "portrait-1080x1920",
            "layout": {"name": "grid"},
        },
        "broadcasting": {"hls": {"quality_tracks": ["360p", "720p", "1080p"]}},
        "transcription": {"language": "nl", "translation": {"languages": ["fr", "de"]}},
        "geofencing": {"names": ["european_union", "canada"]},
        "individual_recording": {"mode": "available", "output_types": ["audio_only"]},
        "ingress": {"enabled": True, "audio_encoding_options": {"bitrate": 64_000, "channels": 2}},
    }

    assert validate_settings_request(data) == data


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("ring", "auto_cancel_timeout_ms", 5_000),
        ("ring", "missed_call_timeout_ms", 180_000),
        ("session", "inactivity_timeout_seconds", 5),
        ("session", "inactivity_timeout_seconds", 900),
        ("frame_recording", "capture_interval_in_seconds", 2),
        ("frame_recording", "capture_interval_in_seconds", 60),
        ("backstage", "join_ahead_time_seconds", 0),
        ("backstage", "join_ahead_time_seconds", 86_400),
        ("limits", "max_duration_seconds", 0),
        ("limits", "max_participants", 0),
        ("video", "target_resolution", {"width": 3840, "height": 240, "bitrate": 6_000_000}),
        ("video", "target_resolution", {"width": 1280, "height": 720, "bitrate": 0}),
    ],
)
def test_bounds_are_inclusive(section, field, value):
    assert validate_settings_request({section: {field: value}}) == {section: {field: value}}


def test_path_prefix_follows_the_caller():
    with pytest.raises(SettingsError) as excinfo:
        validate_call_type_settings({"ring": {"auto_cancel_timeout_ms": 1}})
    assert list(excinfo.value.errors) == ["settings.ring.auto_cancel_timeout_ms"]

    with pytest.raises(SettingsError) as excinfo:
        validate_settings_request({"ring": {"auto_cancel_timeout_ms": 1}}, path="data.settings")
    assert list(excinfo.value.errors) == ["data.settings.ring.auto_cancel_timeout_ms"]


# --------------------------------------------------------------------------------------------
# Validation: rejected input
# --------------------------------------------------------------------------------------------

P = "settings_override"


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        pytest.param([], P, "must be an object", id="top-level-list"),
        pytest.param("ring", P, "must be an object", id="top-level-string"),
        pytest.param(None, P, "must be an object", id="top-level-none"),
        pytest.param({"ringing": {}}, f"{P}.ringing", "unknown settings section", id="section"),
        pytest.param({"ring": 15_000}, f"{P}.ring", "must be an object", id="section-not-dict"),
        pytest.param({"audio": []}, f"{P}.audio", "must be an object", id="section-list"),
        pytest.param(
            {"ring": {"timeout_ms": 15_000}}, f"{P}.ring.timeout_ms", "unknown field", id="field"
        ),
        pytest.param(
            {"ring": {"auto_cancel_timeout_ms": 4_999}},
            f"{P}.ring.auto_cancel_timeout_ms",
            "must be between 5000 and 180000",
            id="ring-below-min",
        ),
        pytest.param(
            {"ring": {"incoming_call_timeout_ms": 180_001}},
            f"{P}.ring.incoming_call_timeout_ms",
            "must be between 5000 and 180000",
            id="ring-above-max",
        ),
        pytest.param(
            {"ring": {"missed_call_timeout_ms": 0}},
            f"{P}.ring.missed_call_timeout_ms",
            "must be between 5000 and 180000",
            id="ring-zero",
        ),
        pytest.param(
            {"ring": {"auto_cancel_timeout_ms": True}},
            f"{P}.ring.auto_cancel_timeout_ms",
            "must be an integer",
            id="bool-for-int",
        ),
        pytest.param(
            {"ring": {"auto_cancel_timeout_ms": 15_000.0}},
            f"{P}.ring.auto_cancel_timeout_ms",
            "must be an integer",
            id="float-for-int",
        ),
        pytest.param(
            {"ring": {"auto_cancel_timeout_ms": "15000"}},
            f"{P}.ring.auto_cancel_timeout_ms",
            "must be an integer",
            id="string-for-int",
        ),
        pytest.param(
            {"video": {"enabled": 1}}, f"{P}.video.enabled", "must be a boolean", id="int-for-bool"
        ),
        pytest.param(
            {"backstage": {"enabled": "true"}},
            f"{P}.backstage.enabled",
            "must be a boolean",
            id="string-for-bool",
        ),
        pytest.param(
            {"audio": {"default_device": "headphones"}},
            f"{P}.audio.default_device",
            "must be one of: speaker, earpiece",
            id="default-device",
        ),
        pytest.param(
            {"video": {"camera_facing": "left"}},
            f"{P}.video.camera_facing",
            "must be one of: front, back, external",
            id="camera-facing",
        ),
        pytest.param(
            {"recording": {"mode": "on"}},
            f"{P}.recording.mode",
            "must be one of: available, disabled, auto-on",
            id="mode",
        ),
        pytest.param(
            {"audio": {"noise_cancellation": {"mode": "auto_on"}}},
            f"{P}.audio.noise_cancellation.mode",
            "must be one of: available, disabled, auto-on",
            id="noise-cancellation",
        ),
        pytest.param(
            {"recording": {"quality": "4k"}}, f"{P}.recording.quality", "must be one of", id="q"
        ),
        pytest.param(
            {"recording": {"layout": {"name": "mosaic"}}},
            f"{P}.recording.layout.name",
            "must be one of: spotlight, grid",
            id="layout-name",
        ),
        pytest.param(
            {"transcription": {"language": "xx"}},
            f"{P}.transcription.language",
            "must be one of: auto, en",
            id="language",
        ),
        pytest.param(
            {"transcription": {"translation": {"languages": ["auto"]}}},
            f"{P}.transcription.translation.languages[0]",
            "must be one of: en",
            id="translation-language",
        ),
        pytest.param(
            {"geofencing": {"names": ["europe"]}},
            f"{P}.geofencing.names[0]",
            "must be one of: european_union",
            id="geofence-name",
        ),
        pytest.param(
            {"geofencing": {"names": "india"}},
            f"{P}.geofencing.names",
            "must be a list",
            id="geofence-not-list",
        ),
        pytest.param(
            {"individual_recording": {"output_types": []}},
            f"{P}.individual_recording.output_types",
            "must contain at least 1 item",
            id="empty-output-types",
        ),
        pytest.param(
            {"individual_recording": {"output_types": ["audio_only", "mp4"]}},
            f"{P}.individual_recording.output_types[1]",
            "must be one of: audio_only",
            id="bad-output-type",
        ),
        pytest.param(
            {"individual_recording": {"output_types": ["audio_only", "audio_only"]}},
            f"{P}.individual_recording.output_types",
            "must not contain duplicates",
            id="duplicate-output-type",
        ),
        pytest.param(
            {"broadcasting": {"hls": {"quality_tracks": []}}},
            f"{P}.broadcasting.hls.quality_tracks",
            "must contain at least 1 item",
            id="no-quality-tracks",
        ),
        pytest.param(
            {"broadcasting": {"hls": {"quality_tracks": ["360p", "480p", "720p", "1080p"]}}},
            f"{P}.broadcasting.hls.quality_tracks",
            "must contain at most 3 items",
            id="four-quality-tracks",
        ),
        pytest.param(
            {"video": {"target_resolution": {"width": 239}}},
            f"{P}.video.target_resolution.width",
            "must be between 240 and 3840",
            id="width-below",
        ),
        pytest.param(
            {"video": {"target_resolution": {"width": 3841}}},
            f"{P}.video.target_resolution.width",
            "must be between 240 and 3840",
            id="width-above",
        ),
        pytest.param(
            {"screensharing": {"target_resolution": {"height": 100}}},
            f"{P}.screensharing.target_resolution.height",
            "must be between 240 and 3840",
            id="screenshare-height",
        ),
        pytest.param(
            {"video": {"target_resolution": {"bitrate": 6_000_001}}},
            f"{P}.video.target_resolution.bitrate",
            "must be between 0 and 6000000",
            id="bitrate-above",
        ),
        pytest.param(
            {"video": {"target_resolution": {"bitrate": -1}}},
            f"{P}.video.target_resolution.bitrate",
            "must be between 0 and 6000000",
            id="bitrate-negative",
        ),
        pytest.param(
            {"session": {"inactivity_timeout_seconds": 4}},
            f"{P}.session.inactivity_timeout_seconds",
            "must be between 5 and 900",
            id="inactivity-4",
        ),
        pytest.param(
            {"session": {"inactivity_timeout_seconds": 901}},
            f"{P}.session.inactivity_timeout_seconds",
            "must be between 5 and 900",
            id="inactivity-901",
        ),
        pytest.param(
            {"frame_recording": {"capture_interval_in_seconds": 1}},
            f"{P}.frame_recording.capture_interval_in_seconds",
            "must be between 2 and 60",
            id="frame-interval-1",
        ),
        pytest.param(
            {"frame_recording": {"quality": "portrait-360x640"}},
            f"{P}.frame_recording.quality",
            "must be one of: 360p, 480p, 720p, 1080p, 1440p",
            id="frame-quality",
        ),
        pytest.param(
            {"limits": {"max_duration_seconds": -1}},
            f"{P}.limits.max_duration_seconds",
            "must be at least 0",
            id="negative-duration",
        ),
        pytest.param(
            {"limits": {"max_participants": -5}},
            f"{P}.limits.max_participants",
            "must be at least 0",
            id="negative-participants",
        ),
        pytest.param(
            {"limits": {"max_participants_exclude_roles": [""]}},
            f"{P}.limits.max_participants_exclude_roles[0]",
            "must be 1 to 255 characters long",
            id="empty-role",
        ),
        pytest.param(
            {"backstage": {"join_ahead_time_seconds": -1}},
            f"{P}.backstage.join_ahead_time_seconds",
            "must be between 0 and 86400",
            id="join-ahead-negative",
        ),
        pytest.param(
            {"backstage": {"join_ahead_time_seconds": 86_401}},
            f"{P}.backstage.join_ahead_time_seconds",
            "must be between 0 and 86400",
            id="join-ahead-too-early",
        ),
        pytest.param(
            {"recording": {"layout": {"options": ["x"]}}},
            f"{P}.recording.layout.options",
            "must be an object",
            id="layout-options",
        ),
        pytest.param(
            {"ingress": {"video_encoding_options": {"720p": {"source": {"fps": "30"}}}}},
            f"{P}.ingress.video_encoding_options.720p.source.fps",
            "must be an integer",
            id="ingress-map",
        ),
    ],
)
def test_invalid_settings_are_reported_at_their_path(data, path, message):
    with pytest.raises(SettingsError) as excinfo:
        validate_settings_request(data)

    assert list(excinfo.value.errors) == [path]
    assert excinfo.value.errors[path].startswith(message)


def test_all_errors_are_collected():
    data = {
        "ring": {"auto_cancel_timeout_ms": 100, "incoming_call_timeout_ms": True},
        "session": {"inactivity_timeout_seconds": 901},
        "video": {"enabled": "yes", "colour": "blue"},
        "ringtone": {},
        "geofencing": {"names": ["india", "mars"]},
        "backstage": {"enabled": True},  # valid, must not hide the others
    }

    with pytest.raises(SettingsError) as excinfo:
        validate_settings_request(data)

    assert excinfo.value.errors == {
        f"{P}.ring.auto_cancel_timeout_ms": "must be between 5000 and 180000",
        f"{P}.ring.incoming_call_timeout_ms": "must be an integer",
        f"{P}.session.inactivity_timeout_seconds": "must be between 5 and 900",
        f"{P}.video.enabled": "must be a boolean",
        f"{P}.video.colour": "unknown field",
        f"{P}.ringtone": "unknown settings section",
        f"{P}.geofencing.names[1]": (
            "must be one of: european_union, iran_north_korea_syria_exclusion, china_exclusion,"
            " russia_exclusion, belarus_exclusion, india, united_states, canada"
        ),
    }


def test_settings_error_str_is_a_readable_summary():
    error = SettingsError(
        {
            "settings_override.ring.auto_cancel_timeout_ms": "must be between 5000 and 180000",
            "settings_override.video.enabled": "must be a boolean",
        }
    )

    assert str(error) == (
        "settings_override.ring.auto_cancel_timeout_ms: must be between 5000 and 180000; "
        "settings_override.video.enabled: must be a boolean"
    )
    assert isinstance(error, Exception)

"""Call settings: the built-in call types, deep merging and request validation.

Everything here is plain Python over JSON-shaped dicts, so it is usable from models,
services, serializers and management commands alike (and testable without Django).

Shapes follow the Stream Video API (reference §3.14, §4.4, §6.7):

* A **full** settings dict has every section of ``CallSettingsResponse`` with every field.
  ``BUILTIN_CALL_TYPE_SETTINGS`` holds one per built-in call type.
* A **partial** settings dict (``CallSettingsRequest``: a call type's ``settings`` or a call's
  ``settings_override``) may name any subset of sections and fields. Effective settings are
  the call type's settings with the call's override deep-merged over them.

Request bounds are validated (``validate_settings_request``); stored defaults are not
re-validated, because Stream's own defaults break the request bounds (ring timeouts of 0 for
``audio_room`` and ``livestream``, below the request minimum of 5000).

The module-level dicts are shared: treat them as read-only and call
``builtin_call_type_settings()`` / ``default_notification_settings()`` for a private copy.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext_noop

if TYPE_CHECKING:
    from .models import Call

__all__ = [
    "BUILTIN_CALL_TYPE_SETTINGS",
    "BUILTIN_NOTIFICATION_SETTINGS",
    "CAMERA_FACINGS",
    "DEFAULT_DEVICES",
    "FRAME_RECORDING_QUALITIES",
    "GEOFENCE_NAMES",
    "LANGUAGE_CODES",
    "LAYOUT_NAMES",
    "MODES",
    "NOTIFICATION_EVENTS",
    "OUTPUT_TYPES",
    "QUALITIES",
    "SECTIONS",
    "TRANSCRIPTION_LANGUAGES",
    "SettingsError",
    "builtin_call_type_settings",
    "deep_merge",
    "default_notification_settings",
    "effective",
    "validate_call_type_settings",
    "validate_notification_settings",
    "validate_settings_request",
]

# --------------------------------------------------------------------------------------------
# Vocabulary (§4.4)
# --------------------------------------------------------------------------------------------

#: The sections of CallSettingsResponse, in the spec's order. All are required in responses
#: except ``ingress``.
SECTIONS: tuple[str, ...] = (
    "audio",
    "video",
    "backstage",
    "ring",
    "limits",
    "session",
    "screensharing",
    "recording",
    "broadcasting",
    "transcription",
    "geofencing",
    "thumbnails",
    "frame_recording",
    "individual_recording",
    "raw_recording",
    "encryption",
    "ingress",
)

MODES: tuple[str, ...] = ("available", "disabled", "auto-on")
DEFAULT_DEVICES: tuple[str, ...] = ("speaker", "earpiece")
CAMERA_FACINGS: tuple[str, ...] = ("front", "back", "external")
QUALITIES: tuple[str, ...] = (
    "360p",
    "480p",
    "720p",
    "1080p",
    "1440p",
    "portrait-360x640",
    "portrait-480x854",
    "portrait-720x1280",
    "portrait-1080x1920",
    "portrait-1440x2560",
)
FRAME_RECORDING_QUALITIES: tuple[str, ...] = ("360p", "480p", "720p", "1080p", "1440p")
LAYOUT_NAMES: tuple[str, ...] = ("spotlight", "grid", "single-participant", "mobile", "custom")
LANGUAGE_CODES: tuple[str, ...] = (
    "en", "fr", "es", "de", "it", "nl", "pt", "pl", "ca", "cs", "da", "el", "fi", "id", "ja",
    "ru", "sv", "ta", "th", "tr", "hu", "ro", "zh", "ar", "tl", "he", "hi", "hr", "ko", "ms",
    "no", "uk", "bg", "et", "sl", "sk",
)  # fmt: skip
TRANSCRIPTION_LANGUAGES: tuple[str, ...] = ("auto", *LANGUAGE_CODES)
GEOFENCE_NAMES: tuple[str, ...] = (
    "european_union",
    "iran_north_korea_syria_exclusion",
    "china_exclusion",
    "russia_exclusion",
    "belarus_exclusion",
    "india",
    "united_states",
    "canada",
)
OUTPUT_TYPES: tuple[str, ...] = (
    "audio_only",
    "video_only",
    "audio_video",
    "screenshare_audio_only",
    "screenshare_video_only",
    "screenshare_audio_video",
)
#: The per-event keys of notification_settings (§3.14).
NOTIFICATION_EVENTS: tuple[str, ...] = (
    "call_live_started",
    "call_missed",
    "call_notification",
    "call_ring",
    "session_started",
)

# --------------------------------------------------------------------------------------------
# Merging
# --------------------------------------------------------------------------------------------


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return a new dict: ``override`` merged over ``base``.

    Nested dicts merge recursively; any other value (lists included) replaces the base value;
    ``None`` in ``override`` means "not set" and is ignored at every depth. The result shares
    no mutable object with either input, and neither input is modified.
    """
    merged: dict[str, Any] = {key: copy.deepcopy(value) for key, value in base.items()}
    for key, value in override.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            current = merged.get(key)
            # Merging over {} still strips the override's nested None values.
            merged[key] = deep_merge(current if isinstance(current, Mapping) else {}, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def overlay(base: Mapping[str, Any], override: Mapping[str, Any]) -> Mapping[str, Any]:
    """``override`` merged over ``base`` like :func:`deep_merge`, without copying: unchanged
    subtrees are shared with ``base``. For the read-only hot path (rendering a call); never
    mutate the result."""
    if not override:
        return base
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            current = base.get(key)
            merged[key] = overlay(current if isinstance(current, Mapping) else {}, value)
        else:
            merged[key] = value
    return merged


def effective(call: Call) -> Mapping[str, Any]:
    """The call's effective settings (read-only): its type's settings with its
    ``settings_override`` laid over them, computed once per pair of settings objects."""
    base, override = call.type.settings, call.settings_override
    memo = call.__dict__.get("_effective_settings")
    if memo is not None and memo[0] is base and memo[1] is override:
        return memo[2]
    merged = overlay(base, override)
    call.__dict__["_effective_settings"] = (base, override, merged)
    return merged


# --------------------------------------------------------------------------------------------
# Built-in call types (§6.7, §4.4; values marked "our choice" are not documented by Stream)
# --------------------------------------------------------------------------------------------


def _layout() -> dict[str, Any]:
    return {
        "name": "spotlight",
        "external_app_url": "",
        "external_css_url": "",
        "detect_orientation": False,
        "options": {},
    }


def _base_settings() -> dict[str, Any]:
    """Full settings shared by every built-in type: the ``default`` type's values.

    Optional response fields with no documented default and no neutral value
    (``screensharing.target_resolution``, ``transcription.speech_segment_config``, the
    ``ingress`` encoding options) are left out, so clients fall back to their own defaults.
    """
    return {
        "audio": {
            "access_request_enabled": True,
            "default_device": "earpiece",
            "hifi_audio_enabled": False,
            "mic_default_on": True,
            "opus_dtx_enabled": True,
            "redundant_coding_enabled": True,
            "speaker_default_on": True,
            "noise_cancellation": {"mode": "available"},  # our choice
        },
        "video": {
            "enabled": True,
            "access_request_enabled": True,
            "camera_default_on": True,
            "camera_facing": "front",
            "target_resolution": {"width": 2560, "height": 1440, "bitrate": 5_000_000},
        },
        "backstage": {"enabled": False, "join_ahead_time_seconds": 0},
        "ring": {
            "auto_cancel_timeout_ms": 15_000,
            "incoming_call_timeout_ms": 15_000,
            "missed_call_timeout_ms": 15_000,
        },
        "limits": {
            "max_participants": 100,  # our choice
            "max_duration_seconds": 0,  # 0 disables the timer
            "max_participants_exclude_owner": False,
            "max_participants_exclude_roles": [],
        },
        "session": {"inactivity_timeout_seconds": 30},  # our choice
        "screensharing": {"enabled": True, "access_request_enabled": True},
        "recording": {
            "mode": "available",
            "quality": "720p",
            "audio_only": False,
            "layout": _layout(),
        },
        "broadcasting": {
            "enabled": True,
            "hls": {
                "enabled": True,
                "auto_on": False,
                "quality_tracks": ["720p"],
                "layout": _layout(),
            },
            "rtmp": {"enabled": False, "quality": "720p", "layout": _layout()},  # our choice
        },
        "transcription": {
            "mode": "available",
            "closed_caption_mode": "available",
            "language": "auto",
            "translation": {"enabled": False, "languages": []},
        },
        "geofencing": {"names": []},
        # Our choice from here on: Stream documents no defaults for these sections.
        "thumbnails": {"enabled": True},
        "frame_recording": {
            "mode": "disabled",
            "capture_interval_in_seconds": 5,
            "quality": "720p",
        },
        "individual_recording": {"mode": "disabled", "output_types": ["audio_video"]},
        "raw_recording": {"mode": "disabled", "audio_only": False},
        "encryption": {"mode": "disabled"},
        "ingress": {"enabled": False},
    }


_NO_RING = {"auto_cancel_timeout_ms": 0, "incoming_call_timeout_ms": 0, "missed_call_timeout_ms": 0}
_FULL_HD_3MBPS = {"width": 1920, "height": 1080, "bitrate": 3_000_000}

_TYPE_DELTAS: dict[str, dict[str, Any]] = {
    "default": {},
    "audio_room": {
        "audio": {"mic_default_on": False, "default_device": "speaker"},
        "video": {"enabled": False, "camera_default_on": False},
        "backstage": {"enabled": True},
        "screensharing": {"enabled": False, "access_request_enabled": False},
        "ring": _NO_RING,
    },
    "livestream": {
        "audio": {
            "mic_default_on": False,
            "default_device": "speaker",
            "access_request_enabled": False,
        },
        "video": {"target_resolution": _FULL_HD_3MBPS},
        "backstage": {"enabled": True},
        "screensharing": {"access_request_enabled": False},
        "ring": _NO_RING,
    },
    "development": {
        "video": {"target_resolution": _FULL_HD_3MBPS},
    },
    # Our scheduled clinic appointments: a waiting room that opens 10 minutes before
    # starts_at, a small call with a hard time limit, and nothing that copies the
    # consultation off the media path (no recording, transcription, thumbnails or broadcast).
    "appointment": {
        "backstage": {"enabled": True, "join_ahead_time_seconds": 600},
        "limits": {"max_participants": 4, "max_duration_seconds": 3600},
        "video": {"enabled": True, "camera_default_on": True},
        "ring": {
            "auto_cancel_timeout_ms": 15_000,
            "incoming_call_timeout_ms": 15_000,
            "missed_call_timeout_ms": 15_000,
        },
        "recording": {"mode": "disabled"},
        "transcription": {"mode": "disabled", "closed_caption_mode": "disabled"},
        "thumbnails": {"enabled": False},
        "broadcasting": {"enabled": False, "hls": {"enabled": False}},
    },
}

#: Full effective settings of each built-in call type. Shared: do not mutate.
BUILTIN_CALL_TYPE_SETTINGS: dict[str, dict[str, Any]] = {
    name: deep_merge(_base_settings(), delta) for name, delta in _TYPE_DELTAS.items()
}


def builtin_call_type_settings(name: str) -> dict[str, Any]:
    """A private copy of a built-in type's full settings. Raises ``KeyError`` if unknown."""
    return copy.deepcopy(BUILTIN_CALL_TYPE_SETTINGS[name])


# --------------------------------------------------------------------------------------------
# Notification settings (§3.14). Titles and bodies are deliberately generic: a push payload
# is shown on a lock screen, so it carries no names, no call details and no templates.
# --------------------------------------------------------------------------------------------


def _event_notification(*, enabled: bool, title: str, body: str) -> dict[str, Any]:
    return {"enabled": enabled, "apns": {"title": title, "body": body}, "fcm": {"data": {}}}


def _notification_settings() -> dict[str, Any]:
    # English on the wire (Stream's settings); a push is written in its user's language
    # (calls.outbox.push.dispatch translates these defaults, gettext_noop marks them).
    return {
        "enabled": True,
        "call_live_started": _event_notification(
            enabled=True,
            title=gettext_noop("Your call is live"),
            body=gettext_noop("Tap to join the call."),
        ),
        "call_missed": _event_notification(
            enabled=True, title=gettext_noop("Missed call"), body=gettext_noop("You missed a call.")
        ),
        "call_notification": _event_notification(
            enabled=True,
            title=gettext_noop("Your call is ready"),
            body=gettext_noop("Tap to join the call."),
        ),
        "call_ring": _event_notification(
            enabled=True, title=gettext_noop("Incoming call"), body=gettext_noop("Tap to answer.")
        ),
        "session_started": _event_notification(
            enabled=False,
            title=gettext_noop("Call started"),
            body=gettext_noop("A call you are invited to has started."),
        ),
    }


#: Default notification_settings of every call type. Shared: do not mutate.
BUILTIN_NOTIFICATION_SETTINGS: dict[str, Any] = _notification_settings()


def default_notification_settings() -> dict[str, Any]:
    """A private copy of the default notification_settings."""
    return copy.deepcopy(BUILTIN_NOTIFICATION_SETTINGS)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


class SettingsError(Exception):
    """Invalid settings. ``errors`` maps a dotted field path to a human message."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors: dict[str, str] = dict(errors)
        super().__init__(self.errors)

    def __str__(self) -> str:
        return "; ".join(f"{path}: {message}" for path, message in self.errors.items())


_INVALID: Any = object()  # returned by a spec whose value failed; its error is already recorded


def _report(errors: dict[str, str], path: str, message: str) -> Any:
    errors.setdefault(path, message)
    return _INVALID


def _choices(values: Iterable[str]) -> str:
    return "must be one of: " + ", ".join(values)


class _Spec:
    def clean(self, value: object, path: str, errors: dict[str, str]) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class _Bool(_Spec):
    def clean(self, value: object, path: str, errors: dict[str, str]) -> Any:
        if not isinstance(value, bool):
            return _report(errors, path, "must be a boolean")
        return value


@dataclass(frozen=True)
class _Int(_Spec):
    minimum: int | None = None
    maximum: int | None = None

    def clean(self, value: object, path: str, errors: dict[str, str]) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            return _report(errors, path, "must be an integer")
        if self.minimum is not None and self.maximum is not None:
            if not self.minimum <= value <= self.maximum:
                return _report(errors, path, f"must be between {self.minimum} and {self.maximum}")
        elif self.minimum is not None and value < self.minimum:
            return _report(errors, path, f"must be at least {self.minimum}")
        elif self.maximum is not None and value > self.maximum:
            return _report(errors, path, f"must be at most {self.maximum}")
        return value


@dataclass(frozen=True)
class _Str(_Spec):
    min_length: int = 0
    max_length: int = 2048  # our choice: long enough for any URL, short enough to store

    def clean(self, value: object, path: str, errors: dict[str, str]) -> Any:
        if not isinstance(value, str):
            return _report(errors, path, "must be a string")
        if not self.min_length <= len(value) <= self.max_length:
            return _report(
                errors,
                path,
                f"must be {self.min_length} to {self.max_length} characters long",
            )
        return value


@dataclass(frozen=True)
class _Choice(_Spec):
    values: tuple[str, ...]

    def clean(self, value: object, path: str, errors: dict[str, str]) -> Any:
        if not isinstance(value, str) or value not in self.values:
            return _report(errors, path, _choices(self.values))
        return value


@dataclass(frozen=True)
class _List(_Spec):
    item: _Spec
    min_items: int = 0
    max_items: int | None = None
    unique: bool = True

    def clean(self, value: object, path: str, errors: dict[str, str]) -> Any:
        if not isinstance(value, list):
            return _report(errors, path, "must be a list")
        if len(value) < self.min_items:
            plural = "" if self.min_items == 1 else "s"
            return _report(errors, path, f"must contain at least {self.min_items} item{plural}")
        if self.max_items is not None and len(value) > self.max_items:
            return _report(errors, path, f"must contain at most {self.max_items} items")
        cleaned = [self.item.clean(item, f"{path}[{i}]", errors) for i, item in enumerate(value)]
        if any(item is _INVALID for item in cleaned):
            return _INVALID
        if self.unique and len(set(cleaned)) != len(cleaned):
            return _report(errors, path, "must not contain duplicates")
        return cleaned


@dataclass(frozen=True)
class _JSONObject(_Spec):
    """An opaque JSON object (layout ``options``, push ``data``), copied as given."""

    def clean(self, value: object, path: str, errors: dict[str, str]) -> Any:
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            return _report(errors, path, "must be an object")
        return copy.deepcopy(value)


@dataclass(frozen=True)
class _MapOf(_Spec):
    """A JSON object with free keys whose values all follow one spec."""

    value: _Spec

    def clean(self, value: object, path: str, errors: dict[str, str]) -> Any:
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            return _report(errors, path, "must be an object")
        cleaned = {
            key: self.value.clean(item, f"{path}.{key}", errors)
            for key, item in value.items()
            if item is not None
        }
        if any(item is _INVALID for item in cleaned.values()):
            return _INVALID
        return cleaned


@dataclass(frozen=True)
class _Object(_Spec):
    """A JSON object with known keys, all optional; ``None`` values count as absent."""

    fields: Mapping[str, _Spec]
    unknown_message: str = "unknown field"

    def clean(self, value: object, path: str, errors: dict[str, str]) -> Any:
        if not isinstance(value, dict):
            return _report(errors, path, "must be an object")
        cleaned: dict[str, Any] = {}
        failed = False
        for key, item in value.items():
            if item is None:
                continue
            child_path = f"{path}.{key}"
            spec = self.fields.get(key) if isinstance(key, str) else None
            if spec is None:
                failed = True
                _report(errors, child_path, self.unknown_message)
                continue
            result = spec.clean(item, child_path, errors)
            if result is _INVALID:
                failed = True
            else:
                cleaned[key] = result
        return _INVALID if failed else cleaned


# Shared field specs.
_BOOL = _Bool()
_MODE = _Choice(MODES)
_QUALITY = _Choice(QUALITIES)
_NON_NEGATIVE = _Int(minimum=0)
_RING_TIMEOUT = _Int(5_000, 180_000)  # request bounds; stored defaults may be 0
_TARGET_RESOLUTION = _Object(
    {
        "width": _Int(240, 3840),
        "height": _Int(240, 3840),
        "bitrate": _Int(0, 6_000_000),
    }
)
_LAYOUT = _Object(
    {
        "name": _Choice(LAYOUT_NAMES),
        "external_app_url": _Str(),
        "external_css_url": _Str(),
        "detect_orientation": _BOOL,
        "options": _JSONObject(),
    }
)

# One spec per section of CallSettingsRequest (§4.4). Fields the spec requires in requests are
# deliberately optional here: a partial override is deep-merged over complete defaults.
_SECTION_SPECS: dict[str, _Spec] = {
    "audio": _Object(
        {
            "access_request_enabled": _BOOL,
            "default_device": _Choice(DEFAULT_DEVICES),
            "hifi_audio_enabled": _BOOL,
            "mic_default_on": _BOOL,
            "opus_dtx_enabled": _BOOL,
            "redundant_coding_enabled": _BOOL,
            "speaker_default_on": _BOOL,
            "noise_cancellation": _Object({"mode": _MODE}),
        }
    ),
    "video": _Object(
        {
            "enabled": _BOOL,
            "access_request_enabled": _BOOL,
            "camera_default_on": _BOOL,
            "camera_facing": _Choice(CAMERA_FACINGS),
            "target_resolution": _TARGET_RESOLUTION,
        }
    ),
    "backstage": _Object(
        {
            "enabled": _BOOL,
            "join_ahead_time_seconds": _Int(0, 86_400),  # our choice: at most a day early
            # Our extension: holders of join-backstage enter from this long before the start
            # (unset: any time). Enforced by capabilities.join_state.
            "hosts_join_ahead_seconds": _Int(0, 86_400),
            # Our extension, the waiting room (capabilities.join_state): in a live call,
            # people without join-backstage wait in the lobby until a host is present
            # (`auto_admit`, default true) or a host or staff admits them; the lobby says
            # "running late" this long after the start.
            "waiting_room": _BOOL,
            "auto_admit": _BOOL,
            "running_late_after_seconds": _Int(0, 86_400),
        }
    ),
    "ring": _Object(
        {
            "auto_cancel_timeout_ms": _RING_TIMEOUT,
            "incoming_call_timeout_ms": _RING_TIMEOUT,
            "missed_call_timeout_ms": _RING_TIMEOUT,
        }
    ),
    "limits": _Object(
        {
            "max_participants": _NON_NEGATIVE,
            "max_duration_seconds": _NON_NEGATIVE,  # 0 disables the timer
            "max_participants_exclude_owner": _BOOL,
            "max_participants_exclude_roles": _List(_Str(min_length=1, max_length=255)),
        }
    ),
    "session": _Object({"inactivity_timeout_seconds": _Int(5, 900)}),
    "screensharing": _Object(
        {
            "enabled": _BOOL,
            "access_request_enabled": _BOOL,
            "target_resolution": _TARGET_RESOLUTION,
        }
    ),
    "recording": _Object(
        {"mode": _MODE, "quality": _QUALITY, "audio_only": _BOOL, "layout": _LAYOUT}
    ),
    "broadcasting": _Object(
        {
            "enabled": _BOOL,
            "hls": _Object(
                {
                    "enabled": _BOOL,
                    "auto_on": _BOOL,
                    "quality_tracks": _List(_QUALITY, min_items=1, max_items=3),
                    "layout": _LAYOUT,
                }
            ),
            "rtmp": _Object({"enabled": _BOOL, "quality": _QUALITY, "layout": _LAYOUT}),
        }
    ),
    "transcription": _Object(
        {
            "mode": _MODE,
            "closed_caption_mode": _MODE,
            "language": _Choice(TRANSCRIPTION_LANGUAGES),
            "speech_segment_config": _Object(
                {"max_speech_caption_ms": _NON_NEGATIVE, "silence_duration_ms": _NON_NEGATIVE}
            ),
            "translation": _Object({"enabled": _BOOL, "languages": _List(_Choice(LANGUAGE_CODES))}),
        }
    ),
    "geofencing": _Object({"names": _List(_Choice(GEOFENCE_NAMES))}),
    "thumbnails": _Object({"enabled": _BOOL}),
    "frame_recording": _Object(
        {
            "mode": _MODE,
            "capture_interval_in_seconds": _Int(2, 60),
            "quality": _Choice(FRAME_RECORDING_QUALITIES),
        }
    ),
    "individual_recording": _Object(
        {"mode": _MODE, "output_types": _List(_Choice(OUTPUT_TYPES), min_items=1)}
    ),
    "raw_recording": _Object({"mode": _MODE, "audio_only": _BOOL}),
    "encryption": _Object({"mode": _MODE}),
    "ingress": _Object(
        {
            "enabled": _BOOL,
            "audio_encoding_options": _Object(
                {"bitrate": _NON_NEGATIVE, "channels": _Int(minimum=1), "enable_dtx": _BOOL}
            ),
            "video_encoding_options": _MapOf(
                _Object(
                    {
                        "layers": _List(
                            _Object(
                                {
                                    "bitrate": _NON_NEGATIVE,
                                    "codec": _Str(min_length=1, max_length=32),
                                    "frame_rate_limit": _NON_NEGATIVE,
                                    "max_dimension": _NON_NEGATIVE,
                                    "min_dimension": _NON_NEGATIVE,
                                }
                            ),
                            unique=False,
                        ),
                        "source": _Object(
                            {
                                "fps": _NON_NEGATIVE,
                                "height": _NON_NEGATIVE,
                                "width": _NON_NEGATIVE,
                            }
                        ),
                    }
                )
            ),
        }
    ),
}
if tuple(_SECTION_SPECS) != SECTIONS:  # pragma: no cover - guards edits to either list
    raise RuntimeError("_SECTION_SPECS and SECTIONS disagree")

_SETTINGS_SPEC = _Object(_SECTION_SPECS, unknown_message="unknown settings section")

_EVENT_NOTIFICATION_SPEC = _Object(
    {
        "enabled": _BOOL,
        "apns": _Object(
            {
                "title": _Str(max_length=255),
                "body": _Str(max_length=1024),
                "sound": _Str(max_length=255),
                "content-available": _Int(0, 1),
                "mutable-content": _Int(0, 1),
                "data": _JSONObject(),
            }
        ),
        "fcm": _Object({"data": _JSONObject()}),
    }
)
_NOTIFICATION_SPEC = _Object(
    {"enabled": _BOOL, **dict.fromkeys(NOTIFICATION_EVENTS, _EVENT_NOTIFICATION_SPEC)}
)


def _validate(spec: _Spec, data: object, path: str) -> dict[str, Any]:
    errors: dict[str, str] = {}
    cleaned = spec.clean(data, path, errors)
    if errors or cleaned is _INVALID:
        raise SettingsError(errors or {path: "is invalid"})
    return cleaned


def validate_settings_request(data: object, *, path: str = "settings_override") -> dict[str, Any]:
    """Validate a partial CallSettingsRequest and return a cleaned copy without ``None`` values.

    Every section and field is optional. Unknown sections or fields, wrong types (a bool is
    not an int, nor an int a bool), values outside the enums and out-of-range numbers are
    errors. All errors are collected and raised together as ``SettingsError``, keyed by
    dotted path from ``path`` (``settings_override.ring.auto_cancel_timeout_ms``).
    """
    return _validate(_SETTINGS_SPEC, data, path)


def validate_call_type_settings(data: object, *, path: str = "settings") -> dict[str, Any]:
    """Validate a call type's (partial) ``settings``, by the same rules as an override."""
    return _validate(_SETTINGS_SPEC, data, path)


def validate_notification_settings(
    data: object, *, path: str = "notification_settings"
) -> dict[str, Any]:
    """Validate a (partial) notification_settings object (§3.14); same conventions."""
    return _validate(_NOTIFICATION_SPEC, data, path)

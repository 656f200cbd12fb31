"""OpenVINO's model converter and NNCF report usage to Google Analytics (through openvino-telemetry)
unless the user opted out: where the user never answered (no consent file), they count that as yes.

edgekiln compiles models offline, often private ones, and says it downloads nothing and sends nothing:
in its own process, no answer counts as no. A user who opted in with OpenVINO's `opt_in_out --opt_in`
is still reported as they chose, and `opt_in_out --opt_out` is respected as before. (Each report also
forked the build process, several GB with torch loaded, to send one event.)"""

from __future__ import annotations

_MARK = "_edgekiln_declines_without_consent"


def decline_unless_opted_in() -> None:
    """From now on in this process, openvino-telemetry sends only for a user whose consent file says yes."""
    try:
        from openvino_telemetry import Telemetry
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:  # not installed: nothing is sent
        return
    if not getattr(OptInChecker.check, _MARK, False):
        original = OptInChecker.check

        def check(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            return result if result is ConsentCheckResult.ACCEPTED else ConsentCheckResult.DECLINED

        setattr(check, _MARK, True)
        OptInChecker.check = check
    made = getattr(Telemetry, "_SingletonMetaClass__single_instance", None)  # NNCF makes one on import
    if made is not None and getattr(made, "consent", False):
        made.consent = OptInChecker().check(False, False) is ConsentCheckResult.ACCEPTED

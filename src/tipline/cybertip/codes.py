"""CyberTipline Reporting API response codes (CYBERTIPLINE_API.md section 1).

One registry: every place that emits or documents a code reads it from here.
"""

from __future__ import annotations

from enum import IntEnum


class ResponseCode(IntEnum):
    SUCCESS = 0
    SERVER_ERROR = 1000
    SAVE_FAILED = 1100
    UPLOAD_FAILED = 1110
    FILE_UPLOAD_FAILED = 1111
    RESOURCE_NOT_FOUND = 1210
    UPDATE_FAILED = 1300
    AUTHENTICATION_REQUIRED = 2000
    NOT_AUTHORISED = 3000
    NO_SUBMIT_AUTHORISATION = 3100
    NO_UPDATE_AUTHORISATION = 3300
    INVALID_REQUEST = 4000
    VALIDATION_FAILED = 4100
    MALFORMED_XML = 4110
    MALFORMED_FILE = 4200
    REPORT_NOT_FOUND = 5001
    FILE_NOT_FOUND = 5002
    REPORT_RETRACTED = 5101
    REPORT_FINISHED = 5102


DESCRIPTIONS: dict[ResponseCode, str] = {
    ResponseCode.SUCCESS: "Success",
    ResponseCode.SERVER_ERROR: "Server error",
    ResponseCode.SAVE_FAILED: "Save failed",
    ResponseCode.UPLOAD_FAILED: "Upload failed",
    ResponseCode.FILE_UPLOAD_FAILED: "File upload failed",
    ResponseCode.RESOURCE_NOT_FOUND: "Resource not found",
    ResponseCode.UPDATE_FAILED: "Update failed",
    ResponseCode.AUTHENTICATION_REQUIRED: "Authentication required",
    ResponseCode.NOT_AUTHORISED: "Not authorised for this action",
    ResponseCode.NO_SUBMIT_AUTHORISATION: "No authorisation to make submissions",
    ResponseCode.NO_UPDATE_AUTHORISATION: "No authorisation to make updates",
    ResponseCode.INVALID_REQUEST: "Invalid request",
    ResponseCode.VALIDATION_FAILED: "Validation failed",
    ResponseCode.MALFORMED_XML: "Malformed XML submittal",
    ResponseCode.MALFORMED_FILE: "Malformed file submittal",
    ResponseCode.REPORT_NOT_FOUND: "Report does not exist",
    ResponseCode.FILE_NOT_FOUND: "File does not exist",
    ResponseCode.REPORT_RETRACTED: "Report already retracted",
    ResponseCode.REPORT_FINISHED: "Report already finished",
}


class CybertipError(Exception):
    """An application-level rejection, answered with HTTP 200 and a response code."""

    def __init__(self, code: ResponseCode, detail: str | None = None) -> None:
        self.code = code
        self.detail = detail
        super().__init__(self.description)

    @property
    def description(self) -> str:
        base = DESCRIPTIONS[self.code]
        return f"{base} - {self.detail}" if self.detail else base

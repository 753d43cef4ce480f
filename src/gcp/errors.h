#pragma once

#include <string>
#include <string_view>

#include "common/error.h"

namespace agentbox::gcp {

// Turns a Google error response into an agentbox Error, in exactly one place.
// `service` names the API in the message ("Cloud Storage", "Cloud Run").
// Mapping: 404 -> kNotFound; 409 -> kConflict; 412 -> kConflict with "precondition" in the
// message; 403 -> kForbidden naming the missing permission when Google names it (ErrorInfo
// metadata.permission, or a dotted permission such as storage.objects.create in the message);
// 401 -> kUnauthorized; 400 -> kInvalidArgument (FAILED_PRECONDITION too); 408 -> kTimeout;
// 413 -> kTooLarge; 429 and 5xx -> kUnavailable; anything else -> kInternal.
// The message reads "<service>: <code> <status or reason>: <Google's message>", e.g.
// "Cloud Storage: 404 notFound: No such object: b/o".
Error ErrorFromResponse(std::string_view service, int http_status, std::string_view body);

// The Google status word of an error body: error.status ("ALREADY_EXISTS") or the first
// error.errors[].reason ("conditionNotMet"); empty when the body carries neither.
std::string GoogleStatus(std::string_view body);

}  // namespace agentbox::gcp

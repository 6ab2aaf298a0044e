"""Tests of worker.kie.schemas: outbound inputs and bodies, inbound answers and callbacks (pure functions)."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError

from worker.errors import InvalidInput, MalformedResponse
from worker.kie.schemas import (COST_MS_THRESHOLD, CreateAccepted, Envelope, NanoBananaInput, Outcome,
                            build_create_body, envelope, known_models, parse_callback,
                            parse_create_response, parse_record, register_model, validate_input)
from worker.kie.schemas.fields import Text
from worker.kie.schemas.inputs import _MODELS
from worker.kie.schemas.jsonsafe import NotJsonSafe, check_json_value, loads_bounded, show

NB, EDIT, PRO = "google/nano-banana", "google/nano-banana-edit", "nano-banana-pro"
TASK = "e989621f54392584b05867f87b160672"


def invalid(model, data, **kw) -> dict:
    with pytest.raises(InvalidInput) as info:
        validate_input(model, data, **kw)
    assert info.value.model == (model if isinstance(model, str) else None)
    return info.value.errors


# ---------------------------------------------------------------- inputs: google/nano-banana


def test_nano_banana_minimal_gets_defaults():
    assert validate_input(NB, {"prompt": "a banana"}) == {
        "prompt": "a banana", "output_format": "png", "image_size": "1:1"}


def test_nano_banana_full():
    data = {"prompt": "p" * 5000, "output_format": "jpeg", "image_size": "21:9", "nsfw_checker": False}
    assert validate_input(NB, data) == data


def test_nano_banana_aspect_ratio_alone_gets_no_image_size():
    assert validate_input(NB, {"prompt": "x", "aspect_ratio": "16:9"}) == {
        "prompt": "x", "aspect_ratio": "16:9", "output_format": "png"}


def test_nano_banana_aspect_ratio_and_image_size_must_agree():
    assert validate_input(NB, {"prompt": "x", "aspect_ratio": "auto", "image_size": "auto"})["aspect_ratio"] == "auto"
    errors = invalid(NB, {"prompt": "x", "aspect_ratio": "16:9", "image_size": "1:1"})
    assert list(errors) == ["aspect_ratio"]


def test_prompt_too_long_names_prompt_and_length():
    errors = invalid(NB, {"prompt": "x" * 5001})
    assert list(errors) == ["prompt"]
    assert "5000" in errors["prompt"][0] and "5001" in errors["prompt"][0]


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_blank_prompt_rejected(prompt):
    assert "prompt" in invalid(NB, {"prompt": prompt})


@pytest.mark.parametrize("prompt", [None, 5, ["a"], {"a": 1}, True])
def test_prompt_wrong_type(prompt):
    assert "prompt" in invalid(NB, {"prompt": prompt})


def test_prompt_unpaired_surrogate_rejected():
    assert "prompt" in invalid(NB, {"prompt": "ok \ud800"})


def test_prompt_unicode_counts_code_points():
    assert validate_input(NB, {"prompt": "🍌" * 5000})["prompt"] == "🍌" * 5000


def test_missing_prompt():
    errors = invalid(NB, {"image_size": "1:1"})
    assert errors == {"prompt": ["is required"]}


def test_unknown_image_size_names_field_and_value():
    errors = invalid(NB, {"prompt": "x", "image_size": "7:3"})
    assert list(errors) == ["image_size"]
    assert "'7:3'" in errors["image_size"][0] and "21:9" in errors["image_size"][0]


@pytest.mark.parametrize("fmt", ["jpg", "PNG", "webp", "", None, 1])
def test_nano_banana_output_format(fmt):
    assert "output_format" in invalid(NB, {"prompt": "x", "output_format": fmt})


@pytest.mark.parametrize("value", ["true", 1, 0, None, "yes"])
def test_nsfw_checker_is_a_real_bool(value):
    assert "nsfw_checker" in invalid(NB, {"prompt": "x", "nsfw_checker": value})


def test_unknown_field_named_with_allowed_list():
    errors = invalid(NB, {"prompt": "x", "negative_prompt": "y"})
    assert list(errors) == ["negative_prompt"]
    assert "prompt" in errors["negative_prompt"][0] and "unknown field" in errors["negative_prompt"][0]


def test_several_errors_reported_together():
    errors = invalid(NB, {"prompt": "x" * 6000, "image_size": "x", "extra": 1})
    assert set(errors) == {"prompt", "image_size", "extra"}
    text = str(InvalidInput(errors, NB))
    assert "prompt" in text and "image_size" in text and "extra" in text


@pytest.mark.parametrize("data", [None, [], "prompt", 3, ["prompt", "x"]])
def test_non_dict_input_names_input(data):
    assert list(invalid(NB, data)) == ["input"]


def test_non_string_keys_rejected():
    assert list(invalid(NB, {"prompt": "x", 1: "y"})) == ["input"]


def test_input_errors_travel_as_json():
    err = InvalidInput(invalid(NB, {"prompt": "", "bad": 1}), NB)
    json.dumps(err.args)  # Celery's JSON serializer must manage


def test_validate_does_not_mutate_input():
    data = {"prompt": "x"}
    validate_input(NB, data)
    assert data == {"prompt": "x"}


# ---------------------------------------------------------------- inputs: edit and pro


def test_edit_valid():
    out = validate_input(EDIT, {"prompt": "make it blue", "image_urls": ["https://a.example/x.png"]})
    assert out == {"prompt": "make it blue", "image_urls": ["https://a.example/x.png"],
                   "output_format": "png", "image_size": "1:1"}


@pytest.mark.parametrize("urls", [
    [], ["https://a/x"] * 11, "https://a/x", ["ftp://a/x"], ["not a url"], ["https://"],
    ["https://a/" + "x" * 5000], [None], ["http://a/b c"], ["javascript:alert(1)"], ["http://[::1/x"],
])
def test_edit_bad_image_urls(urls):
    assert list(invalid(EDIT, {"prompt": "x", "image_urls": urls})) == ["image_urls"]


def test_edit_url_errors_do_not_echo_urls():
    secret = "https://bucket.example/x.png?X-Amz-Signature=SECRET\n"
    errors = invalid(EDIT, {"prompt": "x", "image_urls": ["https://ok.example/a.png", secret]})
    assert "SECRET" not in json.dumps(errors)
    assert errors["image_urls"][0].startswith("item 1:")


def test_edit_requires_image_urls():
    assert list(invalid(EDIT, {"prompt": "x"})) == ["image_urls"]


def test_edit_rejects_other_models_fields():
    assert list(invalid(EDIT, {"prompt": "x", "image_urls": ["https://a/x"], "resolution": "2K"})) == ["resolution"]


def test_pro_valid_and_defaults():
    assert validate_input(PRO, {"prompt": "p" * 10000}) == {"prompt": "p" * 10000, "output_format": "png"}
    full = {"prompt": "x", "image_input": ["https://a/1.png"] * 8, "aspect_ratio": "4:5", "resolution": "4K",
            "output_format": "jpg"}
    assert validate_input(PRO, full) == full
    assert validate_input(PRO, {"prompt": "x", "image_input": []})["image_input"] == []


@pytest.mark.parametrize("patch, field", [
    ({"prompt": "x" * 10001}, "prompt"),
    ({"image_input": ["https://a/1.png"] * 9}, "image_input"),
    ({"resolution": "8K"}, "resolution"),
    ({"output_format": "jpeg"}, "output_format"),
    ({"aspect_ratio": "2:1"}, "aspect_ratio"),
    ({"image_size": "1:1"}, "image_size"),
])
def test_pro_invalid(patch, field):
    assert list(invalid(PRO, {"prompt": "x", **patch})) == [field]


# ---------------------------------------------------------------- inputs: registry and unknown models


def test_unknown_model_refused_with_hint():
    errors = invalid("acme/imagine", {"prompt": "x"})
    assert list(errors) == ["model"]
    msg = errors["model"][0]
    assert "'acme/imagine'" in msg and NB in msg and "allow_unknown_model=True" in msg


def test_unknown_model_passed_through_when_allowed():
    data = {"prompt": "x", "anything": [1, 2.5, {"deep": None}], "flag": True}
    out = validate_input("acme/imagine", data, allow_unknown_model=True)
    assert out == data and out is not data


@pytest.mark.parametrize("data", [
    [1], "x", None, {"a": float("nan")}, {"a": {1: "int key"}}, {"a": object()}, {"a": 10**400},
    {"a": "\udc80"},
])
def test_unknown_model_pass_through_still_needs_json_object(data):
    assert list(invalid("acme/imagine", data, allow_unknown_model=True)) == ["input"]


def test_unknown_model_pass_through_depth_capped():
    deep: dict = {}
    node = deep
    for _ in range(100):
        node["a"] = {}
        node = node["a"]
    assert list(invalid("acme/imagine", deep, allow_unknown_model=True)) == ["input"]


@pytest.mark.parametrize("model", ["", "  ", None, 7, "m" * 201])
def test_bad_model_name(model):
    assert list(invalid(model, {"prompt": "x"})) == ["model"]


def test_register_model():
    class Toy(Schema):
        prompt = Text(max_length=10, required=True)

    try:
        register_model("toy/model", Toy)
        assert "toy/model" in known_models()
        assert validate_input("toy/model", {"prompt": "hi"}) == {"prompt": "hi"}
        assert "prompt" in invalid("toy/model", {"prompt": "x" * 11})
        with pytest.raises(ValueError):
            register_model("toy/model", NanoBananaInput)
        register_model("toy/model", NanoBananaInput, replace=True)
        with pytest.raises(TypeError):
            register_model("toy/other", dict)
        with pytest.raises(ValueError):
            register_model("", Toy)
    finally:
        _MODELS.pop("toy/model", None)


def test_known_models():
    assert known_models() == tuple(sorted((NB, EDIT, PRO)))


# ---------------------------------------------------------------- create body


def test_create_body():
    cleaned = validate_input(NB, {"prompt": "x"})
    body = build_create_body(NB, cleaned, "https://hooks.example/kie/job1?token=abc")
    assert body == {"model": NB, "callBackUrl": "https://hooks.example/kie/job1?token=abc", "input": cleaned}
    assert list(body) == ["model", "callBackUrl", "input"]
    assert build_create_body(NB, cleaned) == {"model": NB, "input": cleaned}


@pytest.mark.parametrize("model, inp, url, field", [
    ("", {"prompt": "x"}, None, "model"),
    (None, {"prompt": "x"}, None, "model"),
    (NB, ["x"], None, "input"),
    (NB, {"a": float("inf")}, None, "input"),
    (NB, {"prompt": "x"}, "ftp://hooks.example/x?token=SECRET", "callBackUrl"),
    (NB, {"prompt": "x"}, "hooks.example/x?token=SECRET", "callBackUrl"),
])
def test_create_body_invalid(model, inp, url, field):
    with pytest.raises(InvalidInput) as info:
        build_create_body(model, inp, url)
    assert field in info.value.errors
    assert "SECRET" not in str(info.value)


# ---------------------------------------------------------------- envelope and create response


def test_envelope_variants():
    assert envelope({"code": 200, "msg": "success", "data": {"taskId": "t"}}) == Envelope(200, "success",
                                                                                          {"taskId": "t"})
    assert envelope({"code": "402", "message": "Insufficient credits"}) == Envelope(402, "Insufficient credits",
                                                                                    None)
    assert envelope({"code": 200.0, "data": 60.62}) == Envelope(200, "", 60.62)
    assert envelope({"code": 422, "msg": "recordInfo is null", "data": None}) == Envelope(422, "recordInfo is null",
                                                                                          None)


@pytest.mark.parametrize("body", [None, [], "error code: 1010", {}, {"code": None}, {"code": "abc"},
                                  {"code": True}, {"code": 10**100}, {"code": 2.5}, {"code": [200]}])
def test_envelope_malformed(body):
    with pytest.raises(MalformedResponse) as info:
        envelope(body)
    assert info.value.code is None and info.value.retryable


def test_create_response_success():
    assert parse_create_response({"code": 200, "msg": "success", "data": {"taskId": TASK, "recordId": TASK}}) \
        == CreateAccepted(TASK)
    assert parse_create_response({"code": "200", "message": "success", "data": {"taskId": "task_12345678"}}) \
        == CreateAccepted("task_12345678")


@pytest.mark.parametrize("data", [None, {}, {"taskId": ""}, {"taskId": "  "}, {"taskId": 123},
                                  {"taskId": None}, {"taskId": "a b"}, {"taskId": "x" * 300}, "t", [TASK]])
def test_create_response_bad_task_id(data):
    with pytest.raises(MalformedResponse) as info:
        parse_create_response({"code": 200, "msg": "success", "data": data})
    assert "data" in info.value.msg


def test_create_response_non_200_is_not_parsed():
    with pytest.raises(MalformedResponse) as info:
        parse_create_response({"code": 402, "msg": "Insufficient credits", "data": None})
    assert "402" in info.value.msg


# ---------------------------------------------------------------- recordInfo


def record(**data):
    return {"code": 200, "msg": "success", "data": {"taskId": TASK, "model": NB, **data}}


@pytest.mark.parametrize("state", ["waiting", "queuing", "generating"])
def test_record_unfinished_live_shape(state):
    body = record(state=state, param=json.dumps({"model": NB}), resultJson="", failCode=None, failMsg=None,
                  costTime=None, completeTime=None, createTime=1755599634000, updateTime="1755599635000")
    out = parse_record(body)
    assert out.state == state and not out.terminal and not out.succeeded
    assert out.result_urls == () and out.fail_code is None and out.complete_time is None
    assert out.update_time == 1755599635000 and out.param == {"model": NB}


def test_record_unfinished_keys_absent():
    out = parse_record({"code": 200, "msg": "success", "data": {"taskId": TASK, "state": "waiting"}})
    assert out == Outcome(task_id=TASK, state="waiting")


def test_record_success():
    body = record(state="success", resultJson=json.dumps({"resultUrls": ["https://cdn.example/a.png",
                                                                         "http://cdn.example/b.png"]}),
                  costTime=8000, createTime=1, completeTime=2, updateTime=3, consumeCredits=4,
                  remainedCredits="60.62", param="")
    out = parse_record(body)
    assert out.succeeded and out.terminal
    assert out.result_urls == ("https://cdn.example/a.png", "http://cdn.example/b.png")
    assert out.credits == 4 and out.remained_credits == 60.62 and out.param is None
    assert out.cost_seconds == 8.0


def test_record_success_result_json_as_object():
    out = parse_record(record(state="success", resultJson={"resultUrls": ["https://a/x.png"]}))
    assert out.result_urls == ("https://a/x.png",)


def test_record_failed_task():
    body = record(state="fail", resultJson="", failCode="422", failMsg="prompt refused", costTime=0)
    out = parse_record(body)
    assert out.terminal and not out.succeeded
    assert (out.fail_code, out.fail_msg, out.result_urls) == ("422", "prompt refused", ())


def test_record_fail_code_int():
    assert parse_record(record(state="fail", failCode=500, failMsg=None)).fail_code == "500"


@pytest.mark.parametrize("result_json, needle", [
    ("{not json", "not valid JSON"),
    ("[1,2]", "JSON object"),
    ("{}", "resultUrls"),
    ('{"resultUrls": []}', "at least 1"),
    ('{"resultUrls": "https://a/x"}', "list"),
    ('{"resultUrls": ["ftp://a/x"]}', "http"),
    ('{"resultUrls": [1]}', "string"),
    ("", "got nothing"),
    (None, "got nothing"),
    (42, "JSON string or object"),
    ("[" * 100000 + "]" * 100000, "deep"),
    (json.dumps({"resultUrls": ["https://a/x"] * 101}), "at most 100"),
    ('{"resultUrls": ["https://a/x"], "n": NaN}', "NaN"),
])
def test_record_success_without_usable_urls(result_json, needle):
    with pytest.raises(MalformedResponse) as info:
        parse_record(record(state="success", resultJson=result_json))
    assert "data.resultJson" in info.value.msg and needle in info.value.msg


def test_record_success_key_absent():
    body = record(state="success")
    with pytest.raises(MalformedResponse, match="data.resultJson"):
        parse_record(body)


def test_record_result_json_garbage_tolerated_when_unfinished():
    assert parse_record(record(state="generating", resultJson="{oops")).result_urls == ()


def test_record_result_json_capped():
    big = json.dumps({"resultUrls": ["https://a/x"], "pad": "x" * 1_000_001})
    with pytest.raises(MalformedResponse, match="too long"):
        parse_record(record(state="success", resultJson=big))


def test_record_param_tolerated():
    assert parse_record(record(state="waiting", param="{not json")).param is None
    assert parse_record(record(state="waiting", param=[1])).param is None
    assert parse_record(record(state="waiting", param={"a": 1})).param == {"a": 1}


def test_record_loose_fields_dropped_not_fatal():
    out = parse_record(record(state="waiting", createTime="soon", costTime=[1], consumeCredits=float("inf"),
                              updateTime=10**30, model={"x": 1}, failMsg={"a": 1}, extra={"ignored": True}))
    assert (out.create_time, out.cost_time, out.credits, out.update_time, out.model, out.fail_msg) == \
        (None, None, None, None, None, None)


@pytest.mark.parametrize("data, field", [
    ({"state": "waiting"}, "data.taskId"),
    ({"taskId": "", "state": "waiting"}, "data.taskId"),
    ({"taskId": 5, "state": "waiting"}, "data.taskId"),
    ({"taskId": TASK}, "data.state"),
    ({"taskId": TASK, "state": "done"}, "data.state"),
    ({"taskId": TASK, "state": 1}, "data.state"),
    ({"taskId": TASK, "task_id": "other", "state": "waiting"}, "data.task_id"),
])
def test_record_required_fields(data, field):
    with pytest.raises(MalformedResponse) as info:
        parse_record({"code": 200, "msg": "success", "data": data})
    assert info.value.msg.startswith("recordInfo: ") and field in info.value.msg


@pytest.mark.parametrize("body", [
    {"code": 422, "msg": "recordInfo is null", "data": None},
    {"code": 200, "msg": "success", "data": None},
    {"code": 200, "msg": "success", "data": [TASK]},
    "nope", None,
])
def test_record_bad_envelopes(body):
    with pytest.raises(MalformedResponse):
        parse_record(body)


def test_record_state_case_forgiven():
    assert parse_record(record(state=" Generating ")).state == "generating"


# ---------------------------------------------------------------- callbacks

PARAM = ("{\"callBackUrl\":\"https://your-domain.com/api/callback\",\"model\":\"google/nano-banana\",\"input\":"
         "{\"prompt\":\"A surreal painting of a giant banana floating in space, stars and galaxies in the "
         "background, vibrant colors, digital art\",\"output_format\":\"png\",\"image_size\":\"1:1\"}}")

SUCCESS_CALLBACK = {
    "code": 200,
    "data": {
        "completeTime": 1755599644000,
        "consumeCredits": 100,
        "costTime": 8,
        "createTime": 1755599634000,
        "model": "google/nano-banana",
        "param": PARAM,
        "remainedCredits": 2510330,
        "resultJson": "{\"resultUrls\":[\"https://example.com/generated-image.jpg\"]}",
        "state": "success",
        "taskId": "e989621f54392584b05867f87b160672",
        "updateTime": 1755599644000,
    },
    "msg": "Playground task completed successfully.",
}

FAILURE_CALLBACK = {
    "code": 501,
    "data": {
        "completeTime": 1755597081000,
        "consumeCredits": 0,
        "costTime": 0,
        "createTime": 1755596341000,
        "failCode": "500",
        "failMsg": "Internal server error",
        "model": "google/nano-banana",
        "param": PARAM,
        "remainedCredits": 2510430,
        "state": "fail",
        "taskId": "bd3a37c523149e4adf45a3ddb5faf1a8",
        "updateTime": 1755597097000,
    },
    "msg": "Playground task failed.",
}


def callback_errors(body) -> dict:
    with pytest.raises(ValidationError) as info:
        parse_callback(body)
    assert isinstance(info.value.messages, dict)
    return info.value.messages


def test_callback_documented_success():
    out = parse_callback(copy.deepcopy(SUCCESS_CALLBACK))
    assert out == Outcome(
        task_id=TASK, state="success", result_urls=("https://example.com/generated-image.jpg",),
        model=NB, credits=100, remained_credits=2510330, cost_time=8, create_time=1755599634000,
        complete_time=1755599644000, update_time=1755599644000, param=json.loads(PARAM))
    assert out.succeeded and out.cost_seconds == 8.0
    d = out.to_dict()
    assert d["result_urls"] == ["https://example.com/generated-image.jpg"]
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert Outcome.from_dict(d) == out


@pytest.mark.parametrize("code", [501, 400, 500, "501"])
def test_callback_documented_failure(code):
    body = copy.deepcopy(FAILURE_CALLBACK)
    body["code"] = code
    out = parse_callback(body)
    assert (out.state, out.fail_code, out.fail_msg, out.credits) == ("fail", "500", "Internal server error", 0)
    assert out.result_urls == () and out.terminal and not out.succeeded


def test_callback_failure_without_state_or_fail_fields_uses_code_and_msg():
    out = parse_callback({"code": 400, "msg": "bad prompt", "data": {"taskId": TASK}})
    assert (out.state, out.fail_code, out.fail_msg) == ("fail", "400", "bad prompt")


def test_callback_failure_data_null_with_top_level_task_id():
    out = parse_callback({"code": 500, "msg": "server error", "taskId": TASK, "data": None})
    assert (out.task_id, out.state, out.fail_code) == (TASK, "fail", "500")


def test_callback_task_id_variant():
    body = copy.deepcopy(SUCCESS_CALLBACK)
    body["data"]["task_id"] = body["data"].pop("taskId")
    assert parse_callback(body).task_id == TASK


def test_callback_top_level_task_id():
    body = copy.deepcopy(SUCCESS_CALLBACK)
    body["taskId"] = body["data"].pop("taskId")
    assert parse_callback(body).task_id == TASK


def test_callback_conflicting_task_ids():
    body = copy.deepcopy(SUCCESS_CALLBACK)
    body["taskId"] = "someothertask"
    assert "taskId" in callback_errors(body)


def test_callback_credits_consumed_variant():
    body = copy.deepcopy(SUCCESS_CALLBACK)
    body["data"]["creditsConsumed"] = body["data"].pop("consumeCredits")
    assert parse_callback(body).credits == 100


def test_callback_cost_time_in_ms():
    body = copy.deepcopy(SUCCESS_CALLBACK)
    body["data"]["costTime"] = 8000
    out = parse_callback(body)
    assert out.cost_time == 8000 and out.cost_seconds == 8.0


@pytest.mark.parametrize("raw, seconds", [(0, 0.0), (8, 8.0), (599.5, 599.5), (COST_MS_THRESHOLD, 1.0),
                                          (12345, 12.345), (None, None), (-1, None)])
def test_cost_seconds_rule(raw, seconds):
    assert Outcome(task_id="t", state="success", cost_time=raw).cost_seconds == seconds


def test_callback_numeric_strings():
    body = copy.deepcopy(SUCCESS_CALLBACK)
    body["code"] = "200"
    body["data"].update(costTime="8", createTime="1755599634000", consumeCredits="1.5")
    out = parse_callback(body)
    assert (out.cost_time, out.create_time, out.credits) == (8, 1755599634000, 1.5)


def test_callback_success_without_urls():
    body = copy.deepcopy(SUCCESS_CALLBACK)
    body["data"]["resultJson"] = ""
    assert list(callback_errors(body)) == ["data.resultJson"]
    body["data"]["resultJson"] = '{"resultUrls": []}'
    assert list(callback_errors(body)) == ["data.resultJson"]
    del body["data"]["resultJson"]
    assert list(callback_errors(body)) == ["data.resultJson"]


def test_callback_error_code_with_success_state_refused():
    body = copy.deepcopy(SUCCESS_CALLBACK)
    body["code"] = 501
    assert "code" in callback_errors(body)


@pytest.mark.parametrize("body, key", [
    ({"code": 200, "msg": "ok", "data": {"state": "success"}}, "data.taskId"),
    ({"code": 200, "msg": "ok", "data": {"taskId": TASK}}, "data.state"),
    ({"code": 200, "data": "not an object"}, "data"),
    ({"code": "x", "data": {"taskId": TASK, "state": "fail"}}, "code"),
    ({"code": 200, "data": {"taskId": [TASK], "state": "fail"}}, "data.taskId"),
    ({"code": 200, "data": {"taskId": TASK, "state": "running"}}, "data.state"),
])
def test_callback_field_errors(body, key):
    assert key in callback_errors(body)


def test_callback_unknown_fields_ignored():
    body = copy.deepcopy(SUCCESS_CALLBACK)
    body["extra"] = {"x": 1}
    body["data"]["newField"] = [1, 2]
    assert parse_callback(body).succeeded


def test_callback_unicode():
    body = copy.deepcopy(FAILURE_CALLBACK)
    body["data"]["failMsg"] = "内容违规 🚫 \ud800"
    out = parse_callback(body)
    assert out.fail_msg.startswith("内容违规 🚫")
    out.fail_msg.encode("utf-8")


def test_callback_long_fail_msg_truncated():
    body = copy.deepcopy(FAILURE_CALLBACK)
    body["data"]["failMsg"] = "x" * 100_000
    assert len(parse_callback(body).fail_msg) == 2000


# ---------------------------------------------------------------- hostile bodies


def _deep(n: int):
    node: list = []
    root = node
    for _ in range(n):
        child: list = []
        node.append(child)
        node = child
    return root


def _deep_dict(n: int):
    root: dict = {}
    node = root
    for _ in range(n):
        node["a"] = {}
        node = node["a"]
    return root


HOSTILE = [
    None, 0, -1, 10**5000, float("nan"), float("inf"), "", "x" * 100_000, b"bytes", [], [SUCCESS_CALLBACK],
    {}, {"code": 10**5000}, {"code": float("nan")}, {"code": "9" * 5000}, {"data": _deep(50_000)},
    {"code": 200, "data": {"taskId": TASK, "state": "success", "resultJson": _deep_dict(50_000)}},
    {"code": 200, "data": {"taskId": TASK, "state": "success", "param": _deep_dict(50_000),
                           "resultJson": '{"resultUrls": ["https://a/x"]}'}},
    {"code": 200, "data": {"taskId": TASK, "state": "success", "resultJson": "[" * 200_000}},
    {"code": 200, "data": {"taskId": TASK, "state": "success",
                           "resultJson": '{"resultUrls": [' + "9" * 5000 + "]}"}},
    {"code": 200, "data": {"taskId": TASK, "state": "success", "resultJson": {"resultUrls": [10**5000]}}},
    {"code": 200, "data": {"taskId": TASK, "state": "success",
                           "resultJson": {"resultUrls": ["https://a/x"] * 1_000_000}}},
    {"code": 200, "data": {"taskId": "\x00\ud800", "state": "success"}},
    {"code": 200, "data": {"taskId": TASK, "state": "fail", "costTime": "1e999", "createTime": "9" * 5000,
                           "failCode": 10**5000, "failMsg": _deep(1000)}},
    {"code": 200, "data": {"taskId": TASK, "state": "success", 5: 6, (1, 2): 3,
                           "resultJson": '{"resultUrls": ["https://a/x"], "\\ud800": 1}'}},
]


@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_callbacks_only_raise_validation_error(body):
    try:
        out = parse_callback(body)
    except ValidationError as exc:
        assert "could not be read" not in json.dumps(exc.messages)
    else:
        json.dumps(out.to_dict(), allow_nan=False)


@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_records_only_raise_malformed_response(body):
    for parse in (parse_record, parse_create_response, envelope):
        try:
            parse(body)
        except MalformedResponse as exc:
            assert "could not be read" not in exc.msg


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
STATE = st.sampled_from(["waiting", "queuing", "generating", "success", "fail", "", "SUCCESS", None])
DATA = st.fixed_dictionaries(
    {},
    optional={"taskId": st.text(max_size=40) | JSON, "task_id": JSON, "state": STATE | JSON,
              "resultJson": st.sampled_from(["", '{"resultUrls": ["https://a/x"]}', '{"resultUrls": []}'])
              | JSON | JSON.map(json.dumps),
              "param": JSON | JSON.map(json.dumps), "failCode": JSON, "failMsg": JSON, "costTime": JSON,
              "consumeCredits": JSON, "creditsConsumed": JSON, "createTime": JSON, "model": JSON},
)
CALLBACK = st.fixed_dictionaries(
    {}, optional={"code": st.sampled_from([200, 400, 500, 501, "200"]) | JSON, "msg": JSON,
                  "taskId": st.text(max_size=40) | JSON, "data": DATA | JSON})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=JSON | CALLBACK)
def test_fuzz_callback_only_raises_validation_error(body):
    try:
        out = parse_callback(body)
    except ValidationError as exc:
        assert isinstance(exc.messages, dict)
        assert all(isinstance(k, str) and isinstance(v, list) for k, v in exc.messages.items())
        assert "could not be read" not in json.dumps(exc.messages)
        return
    assert out.terminal == (out.state in ("success", "fail"))
    assert bool(out.result_urls) == out.succeeded
    json.dumps(out.to_dict(), allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(body=JSON | CALLBACK)
def test_fuzz_record_only_raises_malformed_response(body):
    try:
        parse_record(body)
    except MalformedResponse as exc:
        assert "could not be read" not in exc.msg


@settings(max_examples=200, deadline=None)
@given(model=st.sampled_from([NB, EDIT, PRO, "acme/x"]) | JSON, data=JSON | CALLBACK, allow=st.booleans())
def test_fuzz_validate_input_only_raises_invalid_input(model, data, allow):
    try:
        out = validate_input(model, data, allow_unknown_model=allow)
    except InvalidInput as exc:
        json.dumps(exc.args)
        return
    json.dumps(out, allow_nan=False)


# ---------------------------------------------------------------- helpers


def test_show_never_fails():
    assert "bits" in show(10**5000)
    assert show(_deep(100_000)).startswith("list of")
    assert show("x" * 1000).endswith("'") and len(show("x" * 1000)) < 80


def test_check_json_value_and_loads_bounded():
    check_json_value({"a": [1, 2.5, None, True, "s"]})
    for bad in ({"a": float("nan")}, {1: 2}, _deep(100), {"a": 2**63}, {"a": {1, 2}}):
        with pytest.raises(NotJsonSafe):
            check_json_value(bad)
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(NotJsonSafe):
        check_json_value(cyclic)
    assert loads_bounded('{"a": 1}', max_chars=100) == {"a": 1}
    for text in ("x" * 101, "{", "[" * 50_000, "NaN", "9" * 5000):
        with pytest.raises(NotJsonSafe):
            loads_bounded(text, max_chars=100 if len(text) == 101 else 10**6)

def transform(data):
    step = data["step_1"]
    return {"pages": len(step["response"]), "http": step["http"]["pagination"]}

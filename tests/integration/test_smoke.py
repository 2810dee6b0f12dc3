def test_hello_world_completes(engine):
    job = engine.run("hello_world", {"n": 3})
    assert job["status"] == "completed", job
    assert len(job["result_data"]["greetings"]) == 3

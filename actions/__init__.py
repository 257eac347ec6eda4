"""The bank assistant's custom actions, served by rasa-sdk's action server."""

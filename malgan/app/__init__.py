"""The dashboard's Streamlit and plotly code: loading, page frame, URL controls, views, charts."""
